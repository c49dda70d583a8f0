"""The mail parser processes: a process pool whose workers end with the daemon.

``concurrent.futures`` gives no such guarantee. With the forkserver start method
every worker holds the forkserver's "alive" pipe, and the forkserver only leaves
when every holder of that pipe has closed it: after ``kill -9`` of the daemon the
workers wait on their task queue forever and keep the forkserver (and the
resource tracker) alive. So each worker watches the daemon itself, by a pidfd
(Linux 5.3+; else it polls once a second), and exits when the daemon is gone;
then the forkserver and the resource tracker see their pipes close and exit too.
``PR_SET_PDEATHSIG`` would not do: a worker's parent is the forkserver, not the
daemon.

A worker that dies (killed, out of memory, a crash in a C extension) breaks a
``ProcessPoolExecutor`` for good: every later ``submit`` raises
``BrokenProcessPool``. :class:`RestartingPool` makes a new pool then and runs the
task once more, so one dead parser does not stop mail sync and the composer.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import ParamSpec, TypeVar

from core.priority import run_behind

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


#: Imported once by the forkserver, so that a worker (a fork of it) starts in
#: milliseconds instead of importing the parser anew (seconds on a loaded machine).
PRELOAD = ["crmcomms.mail.parsers", "core.mail"]


def parser_pool(workers: int) -> ProcessPoolExecutor:
    """A forkserver process pool of ``workers`` processes that end with this process."""
    context = get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # no effect once the forkserver runs
    return ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )


def _start_worker(pid: int) -> None:
    """Pool initializer: a parser works behind the daemon's loop (mail parsing and
    imports are background work) and ends with process ``pid``."""
    run_behind()
    watch_parent(pid)


def watch_parent(pid: int) -> None:
    """Pool initializer: end this process as soon as process ``pid`` ends."""
    threading.Thread(target=_exit_after, args=(pid,), name="watch-daemon", daemon=True).start()


def _exit_after(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)  # gone already
    except (AttributeError, OSError):  # no pidfd here: poll
        while _alive(pid):
            time.sleep(1.0)
    else:
        select.select([fd], [], [])  # readable once the process has exited
    os._exit(0)  # not sys.exit: a thread cannot end the process otherwise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RestartingPool(Executor):
    """An executor over the pools ``make`` builds: when one breaks (a worker died), the
    next is made and the task that saw it break runs once more."""

    def __init__(self, make: Callable[[], ProcessPoolExecutor]) -> None:
        self._make, self._lock = make, threading.Lock()
        self._pool = make()
        self.restarts = 0
        """Pools replaced so far (the tests read it)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a worker; a broken pool is replaced, once."""
        outer: Future[T] = Future()
        self._attempt(outer, lambda pool: pool.submit(fn, *args, **kwargs), retry=True)
        return outer

    def pids(self) -> list[int]:
        """The process ids of the current pool's workers (started ones)."""
        return list(self._pool._processes or {})  # no public accessor

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the current pool down."""
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _attempt(
        self,
        outer: Future[T],
        start: Callable[[ProcessPoolExecutor], Future[T]],
        retry: bool,
    ) -> None:
        pool = self._pool
        try:
            inner = start(pool)
        except BrokenProcessPool as exc:  # broken while idle: found out at submit
            self._retry_or_fail(outer, start, retry, pool, exc)
            return
        outer.add_done_callback(lambda done: inner.cancel() if done.cancelled() else None)
        inner.add_done_callback(lambda done: self._finished(outer, done, start, retry, pool))

    def _finished(
        self,
        outer: Future[T],
        inner: Future[T],
        start: Callable[[ProcessPoolExecutor], Future[T]],
        retry: bool,
        pool: ProcessPoolExecutor,
    ) -> None:
        if outer.done():
            return
        if inner.cancelled():
            outer.cancel()
            return
        exc = inner.exception()
        if isinstance(exc, BrokenProcessPool):
            self._retry_or_fail(outer, start, retry, pool, exc)
        elif exc is not None:
            outer.set_exception(exc)
        else:
            outer.set_result(inner.result())

    def _retry_or_fail(
        self,
        outer: Future[T],
        start: Callable[[ProcessPoolExecutor], Future[T]],
        retry: bool,
        pool: ProcessPoolExecutor,
        exc: BaseException,
    ) -> None:
        self._replace(pool)
        if retry:
            self._attempt(outer, start, retry=False)
        elif not outer.done():
            outer.set_exception(exc)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A new pool instead of ``broken`` (once, however many tasks saw it break)."""
        with self._lock:
            if self._pool is not broken:
                return
            self._pool = self._make()
            self.restarts += 1
        log.warning("a mail parser process died: its pool was replaced")
        broken.shutdown(wait=False, cancel_futures=True)  # may run on its own thread


def restarting_parser_pool(workers: int) -> RestartingPool:
    """:func:`parser_pool` of ``workers`` processes, replaced when it breaks."""
    return RestartingPool(lambda: parser_pool(workers))
