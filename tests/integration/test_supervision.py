"""Crashing workers are restarted, logged with their traceback, counted and shown;
/healthz (liveness) and /readyz (readiness) tell them apart from a link that is down.
Workers are injected through the composition root (``build_app(workers=...)``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core.db import create_engine
from core.migrate import upgrade
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.app import build_app
from crmcomms.config import Settings
from crmcomms.supervisor import Supervision, Worker
from tests.conftest import free_port, make_settings
from tests.waits import wait_until

FAST = Supervision(first_delay=0.01, max_delay=0.02, healthy_after=60, give_up_after=100)


class Flaky:
    """A worker that raises on its first ``crashes`` runs, then runs until cancelled."""

    def __init__(self, crashes: int, error: type[BaseException] = ValueError) -> None:
        self.crashes = crashes
        self.error = error
        self.runs = 0
        self.cancelled = False
        self._changed = asyncio.Event()

    async def run(self) -> None:
        self.runs += 1
        self._changed.set()
        if self.runs <= self.crashes:
            raise self.error(f"boom {self.runs}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def wait_runs(self, runs: int) -> None:
        async with asyncio.timeout(10):
            while self.runs < runs:
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def daemon(
    settings: Settings, workers: dict[str, Worker], supervision: Supervision = FAST
) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(settings, workers, supervision=supervision)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def status_of(client: TestClient[Any, Any], path: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(path)
    return resp.status, await resp.json()


async def test_a_crashing_worker_is_restarted_counted_and_logged(
    migrated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(crashes=2)
    async with daemon(migrated, {"flaky": flaky.run}) as client:
        await flaky.wait_runs(3)
        metrics = await (await client.get("/metrics")).text()
        assert 'crmcomms_worker_restarts_total{worker="flaky"} 2.0' in metrics
        status, body = await status_of(client, "/readyz")
        assert status == 200, body
        worker = body["components"]["worker:flaky"]
        assert worker["state"] == "running" and worker["restarts"] == 2
    assert flaky.cancelled  # shutdown cancels the worker, and the cancellation propagates
    crashes = [r for r in caplog.records if r.getMessage().startswith("worker flaky crashed")]
    assert [r.getMessage() for r in crashes] == [
        "worker flaky crashed (1 in a row); restarting in 0.01 s",
        "worker flaky crashed (2 in a row); restarting in 0.02 s",
    ]
    assert all(r.levelno == logging.ERROR and r.exc_info for r in crashes)
    assert "Traceback" in caplog.text and "ValueError: boom 2" in caplog.text


async def test_a_worker_down_makes_the_daemon_unready_not_dead(migrated: Settings) -> None:
    flaky = Flaky(crashes=1)
    slow = Supervision(first_delay=60, max_delay=60)
    async with daemon(migrated, {"flaky": flaky.run}, slow) as client:

        async def unready() -> bool:
            return (await client.get("/readyz")).status == 503

        await wait_until(unready, what="/readyz 503")
        status, body = await status_of(client, "/readyz")
        worker = body["components"]["worker:flaky"]
        assert worker["state"] == "restarting"
        assert worker["error"] == "ValueError: boom 1"
        assert body["status"] == "degraded" and body["ready"] is False
        status, body = await status_of(client, "/healthz")
        assert status == 200 and body["live"] is True
        assert body["components"]["database"]["state"] == "ok"


async def test_a_worker_crashing_for_good_fails_liveness(migrated: Settings) -> None:
    flaky = Flaky(crashes=1_000_000, error=KeyError)
    give_up = Supervision(first_delay=0.001, max_delay=0.001, give_up_after=3)
    async with daemon(migrated, {"flaky": flaky.run}, give_up) as client:

        async def dead() -> bool:
            return (await client.get("/healthz")).status == 503

        await wait_until(dead, what="/healthz 503")
        _, body = await status_of(client, "/healthz")
        assert body["status"] == "failed"
        assert body["components"]["worker:flaky"]["state"] == "failed"
        await flaky.wait_runs(flaky.runs + 1)  # still retried meanwhile


async def test_a_cancelled_error_raised_by_the_worker_itself_is_a_crash(
    migrated: Settings,
) -> None:
    flaky = Flaky(crashes=1, error=asyncio.CancelledError)
    async with daemon(migrated, {"flaky": flaky.run}) as client:
        await flaky.wait_runs(2)
        metrics = await (await client.get("/metrics")).text()
        assert 'crmcomms_worker_restarts_total{worker="flaky"} 1.0' in metrics


async def test_readyz_follows_the_ami_link(tmp_path: Path) -> None:
    port = free_port()
    ami = {"enabled": True, "port": port, "username": "crm", "secret": "crmsecret"}
    settings = make_settings(tmp_path, ami=ami)
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    await engine.dispose()
    async with daemon(settings, {}) as client:

        async def ready_is(expected: int) -> bool:
            return (await client.get("/readyz")).status == expected

        async def refused() -> bool:
            status, body = await status_of(client, "/readyz")
            ami = body["components"]["ami"]
            assert status == 503 and ami["state"] == "down"
            return str(ami["error"]).endswith("Connection refused")

        await wait_until(refused, what="the refused connection in /readyz")
        async with AmiReplayServer("crm", "crmsecret", port=port):
            await wait_until(lambda: ready_is(200), what="/readyz 200 once logged in")
            _, body = await status_of(client, "/readyz")
            assert body["components"]["ami"]["state"] == "connected"
            assert body["components"]["worker:telephony"]["state"] == "running"
        await wait_until(lambda: ready_is(503), what="/readyz 503 once the PBX is gone")
        status, body = await status_of(client, "/healthz")
        assert status == 200 and body["components"]["ami"]["state"] == "down"
