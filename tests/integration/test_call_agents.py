"""An agent sees every call they rang on, answered, placed, were called on or
transferred, and no other: the call list, the call detail, the recording and the
contact history, over HTTP, on SQLite and PostgreSQL. Supervisors see all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core.agents import add_agent
from core.calls import call_row, record_calls
from core.db import create_engine
from core.migrate import upgrade
from core.models import Contact
from crmcomms.app import build_app
from crmcomms.services import SERVICES, Services
from crmcomms.telephony.calls import CallSnapshot, Transfer
from tests.calls import T0, snapshot
from tests.conftest import make_settings

AGENTS = {"alice": ("101",), "bob": ("102",), "carol": ("103",), "dave": ("104",)}
AGENTS |= {"eve": ("105", "106"), "sue": ()}
BASE = snapshot(
    linkedid="",
    caller_name="Customer",
    ring_seconds=3,
    talk_seconds=30,
    hangup_cause="Normal Clearing",
)
# name: (call, who sees it besides the supervisor)
CALLS: dict[str, tuple[CallSnapshot, set[str]]] = {
    "queue": (
        replace(BASE, agents_rung=("101", "102"), answered_by="102", talked=("102",),
                queue="support", recording="/var/spool/asterisk/monitor/queue.wav"),
        {"alice", "bob"},
    ),
    "outbound": (
        replace(BASE, direction="outbound", caller="101", callee="0301234567", did=""),
        {"alice"},
    ),
    "internal": (
        replace(BASE, direction="internal", caller="101", callee="103", agents_rung=("103",),
                answered_by="103"),
        {"alice", "carol"},
    ),
    "transferred": (
        replace(BASE, agents_rung=("102",), answered_by="102",
                transfers=(Transfer("102", "104", "blind"),)),
        {"bob", "dave"},
    ),
    "nobody": (replace(BASE, status="abandoned", queue="support", talk_seconds=None), set()),
    # an inbound caller is a customer even when its number looks like an extension
    "short caller": (replace(BASE, caller="103", agents_rung=("104",), status="missed"), {"dave"}),
    "eve both": (
        replace(BASE, direction="internal", caller="105", callee="106", agents_rung=("106",),
                answered_by="106"),
        {"eve"},
    ),
    "eve one": (replace(BASE, agents_rung=("106",), status="missed"), {"eve"}),
}  # fmt: skip
NAMES = list(CALLS)


@dataclass
class Office:
    """The running app with agents logged in and the calls of :data:`CALLS` logged."""

    client: TestClient[Any, Any]
    tokens: dict[str, str]
    ids: dict[str, int]  # call name -> id
    contact: int

    async def get(self, path: str, who: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        resp = await self.client.get(path, headers=headers)
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body

    async def listed(self, who: str, query: str = "") -> list[str]:
        status, body = await self.get(f"/api/calls{query}", who)
        assert status == 200, body
        names = {id_: name for name, id_ in self.ids.items()}
        return [names[call["id"]] for call in body["calls"]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def office(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Office]:
    url = ""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database(f"agents_{uuid4().hex}")
    recordings = tmp_path / "monitor"
    recordings.mkdir()
    (recordings / "queue.wav").write_bytes(b"RIFF....WAVE")
    settings = make_settings(
        tmp_path, database={"url": url}, ami={"recordings_dir": str(recordings)}
    )
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    await engine.dispose()
    async with TestClient(TestServer(build_app(settings), host="127.0.0.1")) as client:
        svc: Services = client.app[SERVICES]
        tokens = {name: await _login(client, svc, name, exts) for name, exts in AGENTS.items()}
        async with svc.sessions.begin() as session:
            contact = Contact(display_name="Customer")
            session.add(contact)
            await session.flush()
            logged = [
                call_row(i + 1, _numbered(call, i), [contact.id], "DE")
                for i, (call, _) in enumerate(CALLS.values())
            ]
            await session.run_sync(lambda s: record_calls(s.connection(), logged))
        yield Office(client, tokens, {name: i + 1 for i, name in enumerate(NAMES)}, contact.id)


def _numbered(call: CallSnapshot, i: int) -> CallSnapshot:
    return replace(call, linkedid=f"1700000000.{i}", started_at=T0 + timedelta(minutes=i))


async def _login(
    client: TestClient[Any, Any], svc: Services, name: str, exts: tuple[str, ...]
) -> str:
    password = f"pw-{name}-secret"
    role = "supervisor" if name == "sue" else "agent"
    async with svc.sessions.begin() as session:
        await add_agent(session, name, password, exts, role=role)
    resp = await client.post("/api/login", json={"username": name, "password": password})
    token: str = (await resp.json())["token"]
    return token


def _seen_by(who: str) -> list[str]:
    """The calls ``who`` may see, newest first."""
    return [name for name in reversed(NAMES) if who == "sue" or who in CALLS[name][1]]


async def test_call_list_detail_and_recording(office: Office) -> None:
    for who in AGENTS:
        assert await office.listed(who) == _seen_by(who), who
        for name, id_ in office.ids.items():
            visible = name in _seen_by(who)
            status, body = await office.get(f"/api/calls/{id_}", who)
            assert status == (200 if visible else 403), (who, name, status)
            assert not visible or body["id"] == id_
            status, _ = await office.get(f"/api/calls/{id_}/recording", who)
            expected = 403 if not visible else 200 if name == "queue" else 404
            assert status == expected, (who, name, status)


async def test_contact_history_shows_own_calls(office: Office) -> None:
    names = {id_: name for name, id_ in office.ids.items()}
    for who in AGENTS:
        status, body = await office.get(f"/api/contacts/{office.contact}/history", who)
        assert status == 200, body
        calls = [names[item["id"]] for item in body["items"] if item["kind"] == "call"]
        assert calls == _seen_by(who), who


async def test_filters_with_agents(office: Office) -> None:
    assert await office.listed("sue", "?agent=102") == ["transferred", "queue"]
    assert await office.listed("sue", "?agent=104&status=missed") == ["short caller"]
    assert await office.listed("sue", "?agent=101&limit=2") == ["internal", "outbound"]
    assert await office.listed("alice", "?agent=102") == ["queue"]  # 102's calls alice was in
    assert await office.listed("carol", "?agent=102") == []
    assert await office.listed("eve", "?status=missed") == ["eve one"]
    since = (T0 + timedelta(minutes=2)).isoformat()
    assert await office.listed("alice", f"?since={since.replace('+00:00', 'Z')}") == ["internal"]
    contact = f"?contact={office.contact}"
    assert await office.listed("bob", contact) == ["transferred", "queue"]
    assert await office.listed("bob", f"?contact={office.contact + 1}") == []
    status, body = await office.get(f"/api/calls/{office.ids['nobody']}", "sue")
    assert status == 200 and body["talk_seconds"] is None
    assert body["times_uncertain"] is False and body["backfilled"] is False
