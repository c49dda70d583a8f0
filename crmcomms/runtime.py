"""How the daemon process runs: uvloop, and a garbage collector that does not pause pops."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

import uvloop

#: Allocations between two young-generation collections (the default is 700).
GC_YOUNG_THRESHOLD = 10_000


def serve(main: Coroutine[Any, Any, None]) -> None:
    """Run the daemon's main coroutine on uvloop (cheaper per socket read and
    per thread hand-off than the stdlib loop)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def settle_heap() -> None:
    """Once the daemon is up: keep what startup loaded (modules, SQLAlchemy's
    metadata, phone number tables...) out of the garbage collector's scans and
    collect the young generation less often. A full collection over the whole
    heap took 80-160 ms under load, and every screen pop due meanwhile waits."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
