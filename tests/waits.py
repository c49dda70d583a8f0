"""Waiting in tests: on an event when there is one, else re-checking a condition
(database rows, a server's client count) until it holds; both fail loudly."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

#: How often a condition without an event to wait on is checked again.
RECHECK = 0.02


async def wait_for_event(event: asyncio.Event, timeout: float = 10.0, what: str = "event") -> None:
    """Wait until ``event`` is set; fail loudly after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout} s") from None


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool],
    timeout: float = 10.0,
    what: str = "condition",
) -> None:
    """Re-check ``condition`` (sync or async) until true; fail loudly after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(RECHECK)  # nothing to wait on: the condition is re-checked
