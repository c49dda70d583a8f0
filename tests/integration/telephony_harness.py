"""A running daemon wired to a replaying AMI server, with agents listening on websockets.

Used by the telephony end-to-end tests: AMI socket -> tracker -> database ->
websocket clients, all real, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from core.agents import add_agent
from core.contacts import ContactInput, create_contact
from core.db import create_engine
from core.migrate import upgrade
from crmcomms.ami.framing import AmiFramer
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.app import build_app
from crmcomms.config import Settings
from crmcomms.keys import TELEPHONY
from crmcomms.services import SERVICES
from tests.conftest import make_settings

CAPTURES = Path(__file__).parents[1] / "fixtures" / "ami"
AGENTS = {"alice": "101", "bob": "102", "carol": "103"}
CONTACTS = {
    "+493012345678": ("Jürgen", "Müller", "Müller Bau GmbH"),
    "01715550123": ("Petra", "Schulz", ""),
    "040 123456": ("Hanna", "Hansen", "Hansen Logistik"),
    "+49 30 123456": ("Anna", "Berg", "Berg & Partner"),
    "0171 5559876": ("Max", "Mueller", "Mueller GmbH"),
    "089 12345678": ("Bernd", "Busy", ""),
}


def facts(scenario: str) -> dict[str, Any]:
    """The ground truth recorded beside a capture."""
    loaded: dict[str, Any] = json.loads((CAPTURES / f"{scenario}.json").read_text())
    return loaded


def count_events(scenario: str) -> int:
    """How many ``Event`` blocks a capture holds."""
    blocks = AmiFramer().feed((CAPTURES / f"{scenario}.ami").read_bytes())
    return sum(1 for block in blocks if isinstance(block, dict) and "Event" in block)


@dataclass
class Listener:
    """One agent's websocket, collecting every event it receives."""

    name: str
    ws: aiohttp.ClientWebSocketResponse
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def pump(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
                self.changed.set()

    async def wait_for(
        self, type_: str, count: int = 1, timeout: float = 10
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` events of ``type_`` arrived; fail loudly otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while len(found := self.of(type_)) < count:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {count}x {type_} in {self.kinds()}") from None
        return found

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def kinds(self) -> list[str]:
        """The event types received, without the greeting and queue presence changes
        (the queue captures' member status events give those, see test_call_controls)."""
        return [e["type"] for e in self.events if e["type"] not in ("hello", "presence.changed")]


@dataclass
class Daemon:
    """The app under test, its PBX and the agents' tokens."""

    client: TestClient[Any, Any]
    pbx: AmiReplayServer
    tokens: dict[str, str]
    contact_ids: dict[str, int]
    settings: Settings
    sent: int = 0

    @asynccontextmanager
    async def listening(self, *names: str) -> AsyncIterator[dict[str, Listener]]:
        """Websockets of these agents, each collecting its events in a task."""
        listeners = {}
        for name in names:
            ws = await self.client.ws_connect(f"/ws?token={self.tokens[name]}")
            listeners[name] = Listener(name, ws)
        async with asyncio.TaskGroup() as group:
            for listener in listeners.values():
                group.create_task(listener.pump())
            try:
                yield listeners
            finally:
                for listener in listeners.values():
                    await listener.ws.close()

    async def api(self, path: str, name: str = "sue") -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[name]}"}
        resp = await self.client.get(path, headers=headers)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def settle(self, timeout: float = 10) -> None:
        """Wait until every event block replayed so far has been consumed."""
        telephony = self.client.app[TELEPHONY]
        async with asyncio.timeout(timeout):
            while telephony.consumed < self.sent:
                telephony.progress.clear()
                await telephony.progress.wait()

    async def replay(self, scenario: str, **kwargs: Any) -> None:
        """Replay a capture to the daemon (once)."""
        await self.pbx.replay(CAPTURES / f"{scenario}.ami", **kwargs)
        self.sent += count_events(scenario)


async def _seed(settings: Settings) -> tuple[dict[str, str], dict[str, int]]:
    from core.db import session_factory

    engine = create_engine(settings.database_url)
    await upgrade(engine)
    ids = {}
    async with session_factory(engine).begin() as session:
        for name, ext in AGENTS.items():
            await add_agent(session, name, f"{name}-password", [ext])
        await add_agent(session, "sue", "sue-password", [], role="supervisor")
        for number, (first, last, org) in CONTACTS.items():
            data = ContactInput.model_validate(
                {
                    "first_name": first,
                    "last_name": last,
                    "organization": org or None,
                    "phones": [{"raw": number}],
                }
            )
            ids[number] = (await create_contact(session, data, "DE")).id
    await engine.dispose()
    return {name: f"{name}-password" for name in [*AGENTS, "sue"]}, ids


@asynccontextmanager
async def running_daemon(
    tmp_path: Path, *, database_url: str = "", **ami: Any
) -> AsyncIterator[Daemon]:
    """The daemon connected to a fresh replay server, with seeded agents and contacts.

    ``database_url`` empty: SQLite in ``tmp_path``; ``ami`` overrides AMI settings.
    """
    async with AmiReplayServer("crm", "crmsecret") as pbx:
        ami_settings = {
            "enabled": True,
            "port": pbx.port,
            "username": "crm",
            "secret": "crmsecret",
            "recordings_dir": str(tmp_path / "recordings"),
            **ami,
        }
        settings = make_settings(tmp_path, ami=ami_settings, database={"url": database_url})
        passwords, contact_ids = await _seed(settings)
        app = build_app(settings)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            tokens = {}
            for name, password in passwords.items():
                resp = await client.post(
                    "/api/login", json={"username": name, "password": password}
                )
                tokens[name] = (await resp.json())["token"]
            await pbx.wait_logged_in(1)
            await client.app[TELEPHONY].idle.wait()
            assert client.app[SERVICES].settings.ami.enabled
            yield Daemon(client, pbx, tokens, contact_ids, settings)
