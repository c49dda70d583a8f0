"""Keeps a background worker running: a crash is logged with its traceback, counted,
shown in /readyz, and the worker is started again after a backoff.

A worker is an ``async def run()`` that never returns. If it raises (or returns,
which means it stopped working), :func:`supervise` logs the exception with its
traceback, counts it in ``crmcomms_worker_restarts_total{worker=...}``, reports
the worker as ``restarting`` and runs it again after ``first_delay`` seconds,
doubling up to ``max_delay``; a run that lasted ``healthy_after`` seconds resets
the backoff. After ``give_up_after`` crashes in a row the worker is reported as
``failed``: liveness (/healthz, the systemd watchdog) fails so that systemd
restarts the whole process; it is still retried meanwhile. Cancelling the
supervisor cancels the worker and propagates, also when the worker fails while
cleaning up (logged as a warning, never restarted: the daemon stops cleanly).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from crmcomms.health import FAILED, Health

log = logging.getLogger(__name__)

Worker = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Supervision:
    """Restart timing (tests shorten it)."""

    first_delay: float = 1.0
    max_delay: float = 60.0
    healthy_after: float = 60.0
    give_up_after: int = 10


class WorkerReturned(Exception):
    """A worker's ``run()`` returned although it should run until cancelled."""


async def supervise(
    name: str, run: Worker, health: Health, restarts: Counter, policy: Supervision
) -> None:
    """Run ``run()`` as worker ``name`` until cancelled; see the module docstring."""
    loop = asyncio.get_running_loop()
    key = f"worker:{name}"
    counter = restarts.labels(name)
    crashes = total = 0
    while True:
        health.set(key, "running", ok=True, restarts=total)
        started = loop.time()
        crash = await _run_once(run)
        crashes = 1 if loop.time() - started >= policy.healthy_after else crashes + 1
        delay = min(policy.max_delay, policy.first_delay * 2.0 ** (crashes - 1))
        state = FAILED if crashes >= policy.give_up_after else "restarting"
        health.set(key, state, ok=False, error=_describe(crash), restarts=total)
        log.error(
            "worker %s crashed (%d in a row); restarting in %g s",
            name,
            crashes,
            delay,
            exc_info=crash,
        )
        await asyncio.sleep(delay)
        total += 1
        counter.inc()


async def _run_once(run: Worker) -> BaseException:
    """Run the worker once; return what ended it. Cancellation of the supervisor
    itself propagates; a CancelledError the worker raised on its own is a crash."""
    try:
        await run()
    except asyncio.CancelledError as exc:
        if _stopping():
            raise
        return exc
    except Exception as exc:  # any bug in a worker: logged with its traceback, restarted
        if _stopping():  # it failed while cleaning up: stop all the same, never restart
            log.warning("worker failed while stopping: %s", _describe(exc), exc_info=exc)
            raise asyncio.CancelledError from exc
        return exc
    return WorkerReturned("run() returned")


def _stopping() -> bool:
    """Whether the supervisor itself is being cancelled."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the first leaf of an exception (group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
