"""Stopping a supervised worker that fails while it cleans up (issue 10: SIGTERM after a
crash must be a clean stop): the supervisor stops, the worker is not started again."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from crmcomms.health import Health
from crmcomms.supervisor import Supervision, supervise


async def test_a_worker_failing_while_cancelled_is_not_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    runs = 0

    async def worker() -> None:
        nonlocal runs
        runs += 1
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            raise OSError("connection gone while closing")

    restarts = Counter("restarts", "", ["worker"], registry=CollectorRegistry())
    task = asyncio.create_task(supervise("w", worker, Health(), restarts, Supervision(0.01)))
    await asyncio.wait_for(started.wait(), 5)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)

    assert runs == 1
    assert "worker failed while stopping: OSError: connection gone while closing" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
