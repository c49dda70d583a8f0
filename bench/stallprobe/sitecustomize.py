"""Why did a pop wait? Collector pauses and event-loop stalls of a daemon under a benchmark.

    STALLPROBE_OUT=/tmp/probe.txt PYTHONPATH=bench/stallprobe python bench/ami.py ...
    kill -USR2 <daemon pid>        # adds a census of the heap's objects by type

Python imports ``sitecustomize`` at startup; this one acts only in a process run with
``-m crmcomms`` (the daemon a benchmark starts, which inherits the
environment) and only when ``STALLPROBE_OUT`` names a file. It appends to that file
(times are ``time.monotonic()``, the clock the benchmarks print):

- every full collection and every collection over 3 ms, with its duration;
- every stall of the event loop over 25 ms (a heartbeat task is late), with the loop
  thread's innermost frames at that moment, read by a watchdog thread (a stall written
  right after a collection is that collection: the frames are where it struck);
- on SIGUSR2, the objects the collector tracks, counted by type (the census itself
  pauses the loop).

Not for production: the watchdog wakes every 5 ms. It found the causes of the tails
in docs/BENCHMARKS.md (the benchmark's own collector, the daemon's full collections
during an import).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

STALL = 0.025  # seconds late before a stall is written down
_OUT_PATH = os.environ.get("STALLPROBE_OUT", "")


def _write(line: str) -> None:
    with open(_OUT_PATH, "a", encoding="utf-8") as out:
        out.write(line)


class _Probe:
    def __init__(self) -> None:
        self.beat = time.monotonic()
        self.gc_started = 0.0
        self.main = threading.main_thread().ident

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.gc_started = time.perf_counter()
            return
        ms = (time.perf_counter() - self.gc_started) * 1e3
        if ms > 3 or info["generation"] == 2:
            generation, freed = info["generation"], info["collected"]
            _write(f"{time.monotonic():.3f} gc gen{generation} {ms:.1f} ms collected={freed}\n")

    async def heartbeat(self) -> None:
        while True:
            self.beat = time.monotonic()
            await asyncio.sleep(0.002)

    def watch(self) -> None:
        reported = 0.0
        while True:
            time.sleep(0.005)
            late = time.monotonic() - self.beat
            if late > STALL and self.beat != reported:
                reported = self.beat
                frame = sys._current_frames().get(self.main or 0)
                stack = traceback.format_list(traceback.extract_stack(frame)[-9:]) if frame else []
                head = f"{time.monotonic():.3f} stall {late * 1e3:.0f} ms so far\n"
                _write(head + "".join(stack) + "\n")

    def census(self, *_: object) -> None:
        objects = gc.get_objects()
        counts = collections.Counter(type(o).__qualname__ for o in objects)
        lines = [f"{time.monotonic():.3f} census {len(objects)} tracked objects\n"]
        lines += [f"   {n:9d} {name}\n" for name, n in counts.most_common(25)]
        _write("".join(lines))


def _install() -> None:
    probe = _Probe()
    gc.callbacks.append(probe.on_gc)
    signal.signal(signal.SIGUSR2, probe.census)
    run = asyncio.Runner.run

    def probed_run(self: asyncio.Runner, coro: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            asyncio.get_running_loop().create_task(probe.heartbeat())
            threading.Thread(target=probe.watch, name="stallprobe", daemon=True).start()
            return await coro

        return run(self, main(), **kwargs)

    asyncio.Runner.run = probed_run  # type: ignore[method-assign]


if _OUT_PATH and "crmcomms" in sys.orig_argv:  # python -m crmcomms run ...
    _install()
