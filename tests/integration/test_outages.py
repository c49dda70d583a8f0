"""The call log through link drops and restarts, replayed from a live Asterisk 22.

Each scenario in ``tests/fixtures/outages/`` (see its README) holds the AMI
connections a monitoring client saw around an outage, the CDR Asterisk wrote
and the true times from the SIP traces. The replay server serves ``conn1``,
drops the link (or the daemon is restarted), and serves ``conn2`` with the
real ``CoreShowChannels`` answer on the next login. Every call must come out
with the truth's status, agents and times (within 1 s), or with the time
marked unknown, never one made up from the daemon's clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core.agents import add_agent
from core.db import create_engine, session_factory
from core.migrate import upgrade
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.app import build_app
from crmcomms.config import Settings
from crmcomms.keys import TELEPHONY
from crmcomms.services import SERVICES
from crmcomms.telephony.service import TelephonyService
from tests.conftest import make_settings
from tests.waits import wait_until

OUTAGES = Path(__file__).parents[1] / "fixtures" / "outages"
AGENTS = {"alice": "101", "bob": "102", "carol": "103"}
TOLERANCE = 1.0  # seconds: CDR times are whole seconds


def truth(scenario: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OUTAGES / scenario / "truth.json").read_text())
    return loaded


@dataclass
class Run:
    """Databases and settings shared by the daemon runs of one scenario."""

    tmp: Path
    database_url: str
    cdr: bool

    def settings(self, port: int) -> Settings:
        ami = {"enabled": True, "port": port, "username": "crm", "secret": "crmsecret"}
        sections: dict[str, Any] = {"ami": ami, "database": {"url": self.database_url}}
        if self.cdr:
            sections["cdr"] = {"csv": str(self.tmp / "Master-custom.csv"), "margin_seconds": 60}
        return make_settings(self.tmp, **sections)


@asynccontextmanager
async def daemon(run: Run, pbx: AmiReplayServer) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(run.settings(pbx.port))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def seed(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    async with session_factory(engine).begin() as session:
        for name, ext in AGENTS.items():
            await add_agent(session, name, f"{name}-password", [ext])
        await add_agent(session, "sue", "sue-password", [], role="supervisor")
    await engine.dispose()


async def settled(telephony: TelephonyService, backfills: int) -> None:
    """Everything received is handled and written, at least ``backfills`` CDR reads
    done and none pending."""

    def done() -> bool:
        backfiller = telephony.backfiller
        return (
            telephony.idle.is_set()
            and not telephony.call_log.pending
            and (
                backfiller is None
                or (backfiller.stats.runs >= backfills and not backfiller.pending)
            )
        )

    await wait_until(done, timeout=15, what="telephony settled")


async def calls_of(client: TestClient[Any, Any]) -> dict[str, dict[str, Any]]:
    resp = await client.post("/api/login", json={"username": "sue", "password": "sue-password"})
    token = (await resp.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    resp = await client.get("/api/calls?limit=100", headers=headers)
    assert resp.status == 200, await resp.text()
    calls = (await resp.json())["calls"]
    by_id = {call["linkedid"]: call for call in calls}
    assert len(by_id) == len(calls), "a call is logged twice"
    return by_id


async def tasks_of(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    resp = await client.post("/api/login", json={"username": "sue", "password": "sue-password"})
    headers = {"Authorization": f"Bearer {(await resp.json())['token']}"}
    resp = await client.get("/api/tasks", headers=headers)
    assert resp.status == 200, await resp.text()
    tasks: list[dict[str, Any]] = (await resp.json())["tasks"]
    return tasks


def ended_pushed(client: TestClient[Any, Any]) -> float:
    registry = client.app[SERVICES].metrics.registry
    value = registry.get_sample_value("crmcomms_push_events_total", {"type": "call.ended"})
    return value or 0.0


def _at(iso: str | None) -> datetime | None:
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _true(value: float | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return datetime.fromtimestamp(value, UTC)


def assert_time(call: dict[str, Any], key: str, true: datetime | None) -> None:
    """Within a second of the truth, or unknown and marked so; never a wrong time."""
    logged = _at(call[key])
    if logged is None:
        assert true is None or call["times_uncertain"], f"{key} missing and not marked: {call}"
        return
    assert true is not None, f"{key} is {logged} but the call never had one"
    gap = abs((logged - true).total_seconds())
    assert gap <= TOLERANCE, f"{key} {logged} is {gap:.1f} s off the truth {true}: {call}"


def assert_call(call: dict[str, Any], fact: dict[str, Any]) -> None:
    times = fact["times"]
    assert call["direction"] == fact["direction"]
    if fact["missed"]:
        assert call["status"] == "missed", call
    else:
        assert call["status"] == "answered", call
        assert call["answered_by"] == fact["answered_by"], call
    assert call["agents_rung"] == fact["agents_rung"], call
    assert_time(call, "started_at", _true(times["call_start_utc"]))
    assert_time(call, "answered_at", _true(times.get("agent_answered_utc")))
    assert_time(call, "ended_at", _true(times["call_end_utc"]))
    if call["talk_seconds"] is not None:
        assert abs(call["talk_seconds"] - times["talk_seconds"]) <= TOLERANCE + 0.5, repr(call)
    else:
        assert call["times_uncertain"], call


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres").create_database(f"outage_{uuid4().hex}")
        return url
    return ""


def prepared(tmp_path: Path, scenario: str, database_url: str, cdr: bool) -> Run:
    if cdr:
        data = (OUTAGES / scenario / "cdr-custom.csv").read_bytes()
        (tmp_path / "Master-custom.csv").write_bytes(data)
    return Run(tmp_path, database_url, cdr)


async def replay_outage(run: Run, scenario: str) -> dict[str, dict[str, Any]]:
    """conn1, a dropped link, conn2 with the real channel list; the calls logged.

    With the CDR, a second read of the same rows must change nothing."""
    folder = OUTAGES / scenario
    await seed(run.settings(5038))
    async with AmiReplayServer("crm", "crmsecret") as pbx:
        pbx.script([folder / "conn1.ami", folder / "conn2.ami"])
        async with daemon(run, pbx) as client:
            await pbx.wait_played(2, within=15)
            telephony = client.app[TELEPHONY]
            await settled(telephony, backfills=1 if run.cdr else 0)
            calls = await calls_of(client)
            if telephony.backfiller is None:
                return calls
            tasks, runs = await tasks_of(client), telephony.backfiller.stats.runs
            written = ended_pushed(client)
            assert written > 0
            telephony.backfiller.request(datetime(2026, 12, 2, tzinfo=UTC))
            await settled(telephony, backfills=runs + 1)
            assert await calls_of(client) == calls
            assert await tasks_of(client) == tasks
            assert ended_pushed(client) == written, "a second read of the same CDR pushed again"
            registry = client.app[SERVICES].metrics.registry
            assert registry.get_sample_value("crmcomms_cdr_backfill_runs_total") == runs + 1
            return calls


OUTAGE_SCENARIOS = [
    "ended-during-outage",
    "whole-call-during-outage",
    "answered-during-outage",
    "long-call-across-outage",
]


@pytest.mark.parametrize("scenario", OUTAGE_SCENARIOS)
async def test_outage_with_cdr(tmp_path: Path, database_url: str, scenario: str) -> None:
    """With the CDR, every call is logged once and true, the gap filled in."""
    run = prepared(tmp_path, scenario, database_url, cdr=True)
    calls = await replay_outage(run, scenario)
    facts = truth(scenario)["calls"]
    assert sorted(calls) == sorted(f["linkedid"] for f in facts)
    for fact in facts:
        assert_call(calls[fact["linkedid"]], fact)


@pytest.mark.parametrize("scenario", OUTAGE_SCENARIOS)
async def test_outage_without_cdr(tmp_path: Path, scenario: str) -> None:
    """Without the CDR: no call left open, no time from the daemon's clock."""
    run = prepared(tmp_path, scenario, "", cdr=False)
    calls = await replay_outage(run, scenario)
    for call in calls.values():
        assert call["status"] not in ("ringing", "talking"), call
    for fact in truth(scenario)["calls"]:
        call = calls.get(fact["linkedid"])
        if call is None:
            continue  # started and ended unseen: only the CDR knows it
        assert call["agents_rung"] == fact["agents_rung"][: len(call["agents_rung"])]
        assert_time(call, "started_at", _true(fact["times"]["call_start_utc"]))
        assert_time(call, "answered_at", _true(fact["times"].get("agent_answered_utc")))
        assert_time(call, "ended_at", _true(fact["times"]["call_end_utc"]))


async def restart_while_ringing(
    run: Run,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """A run that stops while a call rings, the caller gives up, a second run starts:
    the calls after the first and after the second run, and the tasks."""
    folder = OUTAGES / "restart-while-ringing"
    await seed(run.settings(5038))
    async with AmiReplayServer("crm", "crmsecret") as pbx:
        pbx.script([folder / "conn1.ami", folder / "conn2.ami"], drop_between=False)
        async with daemon(run, pbx) as client:
            await pbx.wait_played(1)
            await settled(client.app[TELEPHONY], backfills=0)
            before = await calls_of(client)
        async with daemon(run, pbx) as client:
            await pbx.wait_played(2)
            await settled(client.app[TELEPHONY], backfills=1 if run.cdr else 0)
            return before, await calls_of(client), await tasks_of(client)


async def test_restart_while_ringing(tmp_path: Path, database_url: str) -> None:
    """The next run closes the row left ringing from the CDR as missed, with its
    call-back task, once."""
    scenario = "restart-while-ringing"
    run = prepared(tmp_path, scenario, database_url, cdr=True)
    before, calls, tasks = await restart_while_ringing(run)
    assert [c["status"] for c in before.values()] == ["ringing"]
    (fact,) = truth(scenario)["calls"]
    assert_call(calls[fact["linkedid"]], fact)
    assert calls[fact["linkedid"]]["backfilled"]
    callbacks = [t for t in tasks if t["task_kind"] == "callback"]
    assert len(callbacks) == 1 and callbacks[0]["assignees"] == ["101"], tasks


async def test_restart_while_ringing_without_cdr(tmp_path: Path) -> None:
    """Without the CDR the row is closed as ended while not connected, never left ringing."""
    run = prepared(tmp_path, "restart-while-ringing", "", cdr=False)
    _, calls, _ = await restart_while_ringing(run)
    (call,) = calls.values()
    assert call["status"] == "unknown" and call["ended_at"] is None, call
    assert call["times_uncertain"] and call["ring_seconds"] is None, call
