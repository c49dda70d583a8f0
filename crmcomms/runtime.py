"""How the daemon process runs: uvloop, and a garbage collector that does not pause pops."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

import uvloop

#: Seconds between two full (oldest-generation) collections once the daemon is up.
FULL_COLLECTION_EVERY = 60.0
#: The oldest generation's threshold that the interpreter never reaches by itself.
_NEVER = 2**31 - 1


def serve(main: Coroutine[Any, Any, None]) -> None:
    """Run the daemon's main coroutine on uvloop (cheaper per socket read and
    per thread hand-off than the stdlib loop)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


class FullCollections:
    """The oldest generation collected on a timer, not whenever the interpreter's
    rule fires.

    Once the daemon is up, what startup loaded (modules, SQLAlchemy's metadata,
    phone number tables...) is frozen out of the collector's scans: a full
    collection over the whole heap took 80-160 ms under load. What is left still
    costs 40-60 ms per full collection (push ring, live calls, websockets), and
    CPython runs one whenever a quarter of that has been promoted since the last:
    every 20 s at 100 calls/s, and every second while a contacts import or a mail
    sync allocates (issue 10's benchmark: 12 of them in 10 s, pops waiting up to
    150 ms). Here the two young generations keep CPython's rule, and the oldest
    is collected every ``every`` seconds: one known pause a minute, whatever the
    load; cyclic garbage waits at most that long. (A higher young-generation
    threshold was tried: fewer but longer pauses, a worse p99.)
    """

    def __init__(self, every: float = FULL_COLLECTION_EVERY) -> None:
        self.every = every
        self.collections = 0
        self._timer: asyncio.TimerHandle | None = None
        self._thresholds = gc.get_threshold()

    def start(self) -> None:
        """Freeze what is loaded, take over the oldest generation (on the running loop)."""
        gc.collect()
        gc.freeze()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, _NEVER)
        self._schedule()

    def stop(self) -> None:
        """Give the oldest generation back to the interpreter's rule."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        gc.set_threshold(*self._thresholds)

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.every, self._collect)

    def _collect(self) -> None:
        gc.collect(2)
        self.collections += 1
        self._schedule()


def settle_heap() -> None:
    """Once the daemon is up (on its loop): see :class:`FullCollections`; for the
    rest of the process (the loop holds its timer)."""
    FullCollections().start()
