"""Three daemon processes on one PostgreSQL: one owns the AMI link, all serve agents.

Each test starts three ``crmcomms run`` processes on a fresh database of the
session's PostgreSQL, with the AMI replay server in the test process serving
the recorded connections of an outage scenario (``tests/fixtures/outages``):
the first login (the owner's) gets ``conn1``, the next (the new owner's) gets
``conn2`` with the real channel list. Websocket clients on the two other
processes receive the pops through the bus. The owner is killed (``kill -9``)
mid-call, or its database session is cut (``pg_terminate_backend``); another
process must take over within 5 s, and in the end every call is logged once
and true, and every client got each event it may see exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg
import orjson
import pytest

from core.agents import AgentIdentity
from core.db import create_engine
from core.migrate import upgrade
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.health import Health
from crmcomms.ownership import Ownership
from crmcomms.pg import dsn_of
from crmcomms.pgbus import PgBus
from crmcomms.push import Audience, PushHub
from crmcomms.supervisor import Worker
from crmcomms.telephony.controls import hangup_action
from crmcomms.telephony.dialer import Dialer
from tests.conftest import PostgresServer, free_port, make_settings
from tests.integration.test_outages import OUTAGES, assert_call, seed, truth
from tests.waits import wait_for_event, wait_until

pytestmark = pytest.mark.postgres

CLI = [sys.executable, "-m", "crmcomms"]
FAILOVER_TARGET = 5.0
START_TIMEOUT = 90.0  # a loaded 2-core machine imports slowly


@dataclass
class Daemon:
    """One ``crmcomms run`` process and what it logged."""

    proc: asyncio.subprocess.Process
    url: str = ""
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def readyz(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.url}/readyz") as resp:
            body: dict[str, Any] = await resp.json()
            return body

    async def owns_ami(self, http: aiohttp.ClientSession) -> bool:
        components = (await self.readyz(http))["components"]
        return bool(components.get("owner:ami", {}).get("state") == "owner")


@dataclass
class Client:
    """A websocket client: every frame it received, with when."""

    name: str
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [frame for _, frame in self.timed()]

    def timed(self) -> list[tuple[float, dict[str, Any]]]:
        """The events (not hello, pong or reload) with when each arrived."""
        return [(t, f) for t, f in self.received if f["type"] not in ("hello", "pong", "reload")]


def _config(tmp: Path, name: str, database_url: str, ami_port: int) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f'[general]\ndata_dir = "{tmp / name}"\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[ami]\nenabled = true\nport = {ami_port}\nusername = "crm"\nsecret = "crmsecret"\n'
        f'[cdr]\ncsv = "{tmp / "Master-custom.csv"}"\nmargin_seconds = 60\n'
    )
    return path


async def _spawn(config: Path) -> Daemon:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return Daemon(proc)


async def _listening(daemon: Daemon) -> None:
    """Read the log until the daemon says where it listens; then keep reading it."""
    stderr = daemon.proc.stderr
    assert stderr is not None
    async with asyncio.timeout(START_TIMEOUT):
        while not daemon.url:
            line = (await stderr.readline()).decode()
            assert line, f"daemon exited early: {''.join(daemon.log)}"
            daemon.log.append(line)
            if match := re.search(r"listening on (http://127.0.0.1:\d+)", line):
                daemon.url = match.group(1)
    daemon.reader = asyncio.create_task(_drain(stderr, daemon.log))


async def _drain(stream: asyncio.StreamReader, log: list[str]) -> None:
    while line := await stream.readline():
        log.append(line.decode())


@contextlib.asynccontextmanager
async def cluster(tmp: Path, url: str, ami_port: int) -> AsyncIterator[list[Daemon]]:
    configs = [_config(tmp, f"d{n}", url, ami_port) for n in range(3)]
    daemons = [await _spawn(config) for config in configs]
    try:
        await asyncio.gather(*(_listening(daemon) for daemon in daemons))
        yield daemons
    finally:
        for daemon in daemons:
            if daemon.proc.returncode is None:
                daemon.proc.send_signal(signal.SIGTERM)
        for daemon in daemons:
            try:
                async with asyncio.timeout(20):
                    await daemon.proc.wait()
            except TimeoutError:
                daemon.proc.kill()
                raise
            if daemon.reader is not None:
                await daemon.reader


async def _token(http: aiohttp.ClientSession, url: str, user: str) -> str:
    payload = {"username": user, "password": f"{user}-password"}
    async with http.post(f"{url}/api/login", json=payload) as resp:
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["token"]
        return token


async def _listen(http: aiohttp.ClientSession, url: str, user: str, client: Client) -> None:
    """Follow ``/ws``; after a drop, reconnect (to the same URL) with ``since``."""
    token = await _token(http, url, user)
    while True:
        since = max((f["seq"] for f in client.events()), default=None)
        query = f"&since={since or 0}"
        with contextlib.suppress(aiohttp.ClientError):
            async with http.ws_connect(f"{url}/ws?token={token}{query}") as ws:
                async for message in ws:
                    client.received.append((time.monotonic(), orjson.loads(message.data)))
        await asyncio.sleep(0.1)  # the server went away: try again shortly


async def _owner(http: aiohttp.ClientSession, daemons: list[Daemon]) -> Daemon:
    """The one process owning the AMI link (exactly one)."""
    found: list[Daemon] = []

    async def one() -> bool:
        alive = [d for d in daemons if d.proc.returncode is None]
        found[:] = [d for d in alive if await d.owns_ami(http)]
        return len(found) == 1

    await wait_until(one, timeout=10, what="exactly one AMI owner")
    return found[0]


async def _logged_events(url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn_of(url))
    try:
        rows = await conn.fetch(
            "SELECT seq, everyone, extensions::text AS x FROM events ORDER BY seq"
        )
    finally:
        await conn.close()
    return [{"seq": r["seq"], "everyone": r["everyone"], "x": orjson.loads(r["x"])} for r in rows]


async def _calls(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {await _token(http, url, 'sue')}"}
    async with http.get(f"{url}/api/calls?limit=100", headers=headers) as resp:
        calls = (await resp.json())["calls"]
    by_id = {call["linkedid"]: call for call in calls}
    assert len(by_id) == len(calls), "a call is logged twice"
    return by_id


def _assert_streams(
    clients: dict[tuple[str, str | None, int], Client], logged: list[dict[str, Any]]
) -> None:
    """Each client got, in order and once, exactly the logged events it may see."""
    for (user, extension, _), client in clients.items():
        seqs = [f["seq"] for f in client.events()]
        assert seqs == sorted(set(seqs)), f"{client.name}: duplicates or disorder: {seqs}"
        last = logged[-1]["seq"]  # a later backfill may have added some since: not compared
        seqs = [seq for seq in seqs if seq <= last]
        visible = [
            e["seq"] for e in logged if extension is None or e["everyone"] or extension in e["x"]
        ]
        frames = [(f["type"], f.get("seq")) for _, f in client.received]
        assert seqs == sorted(visible), f"{client.name} ({user}) missed events: {frames}"
        pops = [
            (f["call"]["linkedid"], f["agent"])
            for f in client.events()
            if f["type"] == "call.ringing"
        ]
        assert len(pops) == len(set(pops)), f"{client.name}: a pop came twice: {pops}"


async def _failover(tmp: Path, postgres: PostgresServer, scenario: str, cut: bool) -> None:
    url = postgres.create_database(f"scaleout_{uuid4().hex}")
    folder = OUTAGES / scenario
    (tmp / "Master-custom.csv").write_bytes((folder / "cdr-custom.csv").read_bytes())
    await seed(make_settings(tmp, database={"url": url}))
    ami_port = free_port()  # the PBX answers once the agents listen
    async with aiohttp.ClientSession() as http, cluster(tmp, url, ami_port) as daemons:
        owner = await _owner(http, daemons)
        others = [d for d in daemons if d is not owner]
        clients = {
            (user, ext, n): Client(f"{user}@{n}")
            for n in range(2)
            for user, ext in (("sue", None), ("alice", "101"), ("bob", "102"))
        }
        listeners = [
            asyncio.create_task(_listen(http, others[n].url, user, client))
            for (user, _, n), client in clients.items()
        ]
        try:
            await wait_until(lambda: _greeted(clients, listeners), timeout=30, what="hellos")
            async with AmiReplayServer("crm", "crmsecret", port=ami_port) as pbx:
                pbx.script([folder / "conn1.ami", folder / "conn2.ami"], drop_between=False)
                await pbx.wait_played(1, within=15)
                sue = clients["sue", None, 0]
                await wait_until(lambda: sue.events(), what="events on a standby's client")
                await _settled_stream(url, clients)
                before = len(sue.events())
                started = time.monotonic()
                await (_cut_session(url) if cut else _kill(owner))
                await pbx.wait_played(2, within=FAILOVER_TARGET + 5)
                await wait_until(lambda: len(sue.events()) > before, what="an event after")
                failover = sue.timed()[before][0] - started
                assert failover < FAILOVER_TARGET, f"failover took {failover:.2f} s"
                new_owner = await _owner(http, daemons)
                assert new_owner is not owner
                await _settled(http, new_owner.url, truth(scenario))
                logged = await _settled_stream(url, clients)
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
        by_id = await _calls(http, others[0].url)
    facts = truth(scenario)["calls"]
    assert sorted(by_id) == sorted(f["linkedid"] for f in facts)
    for fact in facts:
        assert_call(by_id[fact["linkedid"]], fact)
    _assert_streams(clients, logged)


def _greeted(
    clients: dict[tuple[str, str | None, int], Client], listeners: list[asyncio.Task[None]]
) -> bool:
    """Every client got its hello (a listener that failed raises here)."""
    for task in listeners:
        if task.done():
            task.result()
    return all(client.received for client in clients.values())


async def _kill(daemon: Daemon) -> None:
    daemon.proc.kill()


async def _settled_stream(
    url: str, clients: dict[tuple[str, str | None, int], Client]
) -> list[dict[str, Any]]:
    """Every event in the table (now) delivered to every client that may see it."""
    logged = await _logged_events(url)
    await wait_until(
        lambda: all(len(c.events()) >= _visible(logged, k[1]) for k, c in clients.items()),
        what="every client caught up",
    )
    return logged


def _visible(logged: list[dict[str, Any]], extension: str | None) -> int:
    return sum(1 for e in logged if extension is None or e["everyone"] or extension in e["x"])


async def _settled(http: aiohttp.ClientSession, url: str, facts: dict[str, Any]) -> None:
    """Every call of the scenario logged as the truth says (the CDR read may come last)."""

    async def true() -> bool:
        calls = await _calls(http, url)
        try:
            for fact in facts["calls"]:
                assert_call(calls[fact["linkedid"]], fact)
        except (AssertionError, KeyError):
            return False
        return True

    await wait_until(true, timeout=15, what="every call logged as the truth says")


async def _cut_session(url: str) -> None:
    """End the owner's lock session from the server side."""
    conn = await asyncpg.connect(dsn_of(url))
    try:
        ended = await conn.fetchval(
            "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity AS a"
            " JOIN pg_locks AS l ON l.pid = a.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE '% locks'"
        )
    finally:
        await conn.close()
    assert ended == 1


async def test_owner_killed_while_ringing(tmp_path: Path, postgres: PostgresServer) -> None:
    """kill -9 of the AMI owner while a call rings: another process takes over in < 5 s,
    the call ends missed once, every standby's client sees each event once."""
    await _failover(tmp_path, postgres, "restart-while-ringing", cut=False)


async def test_owner_cut_from_database_mid_call(tmp_path: Path, postgres: PostgresServer) -> None:
    """The owner's database session is ended during a long call: it gives up the link at
    once, another process takes over and finishes the call, nothing lost or doubled."""
    await _failover(tmp_path, postgres, "long-call-across-outage", cut=True)


async def _as(http: aiohttp.ClientSession, url: str, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await _token(http, url, user)}"}


async def _post(
    http: aiohttp.ClientSession, url: str, user: str, json: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    base = url.split("/api/")[0]
    async with http.post(url, json=json or {}, headers=await _as(http, base, user)) as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body


async def test_dial_and_controls_on_standbys_run_on_the_owner(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Click-to-dial and a hang-up asked of standby processes reach the PBX through the
    AMI owner's link exactly as built (once each); another agent's hang-up is refused
    by the owner's check (403); live presence and the wall answer on a standby."""
    url = postgres.create_database(f"forward_{uuid4().hex}")
    folder = OUTAGES / "long-call-across-outage"
    (tmp_path / "Master-custom.csv").write_bytes((folder / "cdr-custom.csv").read_bytes())
    settings = make_settings(tmp_path, database={"url": url})
    await seed(settings)
    ami_port = free_port()
    async with (
        aiohttp.ClientSession() as http,
        cluster(tmp_path, url, ami_port) as daemons,
        AmiReplayServer("crm", "crmsecret", port=ami_port) as pbx,
    ):
        pbx.script([folder / "conn1.ami"], drop_between=False)  # the call stays up
        await pbx.wait_played(1, within=30)
        owner = await _owner(http, daemons)
        first, second = [d for d in daemons if d is not owner]
        call = await _live_call(http, first.url, "1796180345.12")

        status, dialled = await _post(
            http, f"{first.url}/api/calls", "alice", {"to": "030 1234567"}
        )
        assert status == 202, dialled
        expected = Dialer(_NoLink(), settings.ami, settings.general.default_region)
        originate = expected.originate_action("101", "030 1234567")
        assert _received(pbx, "Originate") == [originate]
        assert dialled["message"] == "Originate successfully queued"

        status, refused = await _post(http, f"{second.url}/api/calls/{call}/hangup", "bob")
        assert (status, refused["error"]) == (403, "not your call")
        status, hung = await _post(http, f"{second.url}/api/calls/{call}/hangup", "alice")
        assert (status, hung.get("message")) == (202, "Channel Hungup"), hung
        assert _received(pbx, "Hangup") == [hangup_action("PJSIP/101-0000000d")]

        headers = await _as(http, first.url, "alice")
        async with http.get(f"{first.url}/api/presence", headers=headers) as resp:
            assert resp.status == 200 and [
                a["extension"] for a in (await resp.json())["agents"]
            ] == ["101"]
        async with http.get(
            f"{second.url}/api/wall", headers=await _as(http, second.url, "sue")
        ) as resp:
            assert resp.status == 200 and (await resp.json())["live"] is True


class _NoLink:
    async def send_action(self, action: dict[str, str], timeout: float = 10) -> dict[str, str]:
        raise AssertionError("only builds actions")


def _received(pbx: AmiReplayServer, name: str) -> list[dict[str, str]]:
    """The actions ``name`` the PBX received, without their ActionID (the link's own)."""
    return [
        {k: v for k, v in a.fields.items() if k != "ActionID"}
        for a in pbx.actions
        if a.fields.get("Action") == name
    ]


async def _live_call(http: aiohttp.ClientSession, url: str, linkedid: str) -> int:
    """The id of the call ``linkedid`` once logged as talking."""
    found: list[int] = []

    async def talking() -> bool:
        call = (await _calls(http, url)).get(linkedid)
        if call is not None and call["status"] == "talking":
            found.append(call["id"])
        return bool(found)

    await wait_until(talking, timeout=15, what="the call logged as talking")
    return found[0]


# -- the bus and the locks in one process, each instance as a separate "process" ----------


async def _migrated(postgres: PostgresServer) -> str:
    url = postgres.create_database(f"bus_{uuid4().hex}")
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    return url


@contextlib.asynccontextmanager
async def _buses(url: str, count: int) -> AsyncIterator[list[PgBus]]:
    buses = [PgBus(url, PushHub(), Health()) for _ in range(count)]
    for bus in buses:
        await bus.start()
    tasks = [asyncio.create_task(bus.run()) for bus in buses]
    try:
        yield buses
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _terminate(url: str, application_suffix: str) -> int:
    conn = await asyncpg.connect(dsn_of(url))
    try:
        ended: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE $1",
            f"% {application_suffix}",
        )
    finally:
        await conn.close()
    return ended


async def test_replay_across_processes_and_listener_reconnect(postgres: PostgresServer) -> None:
    """Events published on one instance reach the other numbered alike; a client moving
    over with ``since`` gets exactly what it missed; a listener cut off reads on from its
    last seq (nothing lost, nothing twice)."""
    url = await _migrated(postgres)
    async with _buses(url, 2) as (a, b):
        assert a.pending == 0 and a.hub.epoch == b.hub.epoch  # one numbering per database
        for n in range(5):
            a.publish("task.created", {"n": n}, Audience.all())
        await wait_until(lambda: b.hub.current_seq == 5, what="delivered on b")
        agent = AgentIdentity(1, "alice", "agent", frozenset({"101"}))
        moved = b.hub.subscribe(agent, since=2, epoch=a.hub.epoch)
        assert [e.seq for e in moved.backlog] == [3, 4, 5] and not moved.reload
        live = b.hub.subscribe(agent, since=None, epoch=None)
        assert await _terminate(url, "bus listener") == 2
        for n in range(5, 10):
            a.publish("call.ringing", {"n": n}, Audience.of("101"))
        await wait_until(lambda: b.hub.current_seq == 10, what="b read on after reconnecting")
        frames = [orjson.loads(live.queue.get_nowait()) for _ in range(live.queue.qsize())]
        assert [(f["seq"], f["n"]) for f in frames] == [(s, s - 1) for s in range(6, 11)]


async def test_a_write_repeated_after_a_lost_answer_adds_nothing(
    postgres: PostgresServer,
) -> None:
    """The writer's commit went through but its answer was lost with the connection:
    it writes the batch again after reconnecting, and nothing is there twice (in the
    table, or for the other process's clients)."""
    url = await _migrated(postgres)
    async with _buses(url, 2) as (a, b):
        watcher = b.hub.subscribe(AgentIdentity(1, "sue", "supervisor", frozenset()), None, None)
        insert, lost = a._insert, []

        async def answer_lost(conn: asyncpg.Connection, batch: Any) -> None:
            await insert(conn, batch)  # committed...
            if not lost:  # ...but the answer never came back, once
                lost.append(len(batch))
                raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost")

        a._insert = answer_lost  # type: ignore[method-assign]
        for n in range(5):
            a.publish("task.created", {"n": n}, Audience.all())
        await wait_until(lambda: lost and a.pending == 0, what="the batch written again")
        a.publish("task.created", {"n": 5}, Audience.all())
        await wait_until(lambda: watcher.queue.qsize() == 6, what="b got the events")
        frames = [orjson.loads(watcher.queue.get_nowait()) for _ in range(6)]
        assert [f["n"] for f in frames] == list(range(6))
        assert lost == [5] and watcher.queue.empty()
    assert [e["seq"] for e in await _logged_events(url)] == [f["seq"] for f in frames]


async def test_lock_lost_gives_the_link_up_at_once(postgres: PostgresServer) -> None:
    """Two instances, one link: one runs it; its lock session cut, it stops the worker
    before the other takes over, and the other does within a second or so."""
    url = await _migrated(postgres)
    running: list[str] = []
    stopped = asyncio.Event()

    def worker(name: str) -> Worker:
        async def run() -> None:
            running.append(name)
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(name)
                stopped.set()

        return run

    first, second = Ownership(url, Health(), poll=0.1), Ownership(url, Health(), poll=0.1)
    tasks = [asyncio.create_task(first.guard("ami", worker("first"))())]
    tasks.append(asyncio.create_task(first.run()))
    await wait_until(lambda: running == ["first"], what="first owns the link")
    tasks += [asyncio.create_task(second.guard("ami", worker("second"))())]
    tasks.append(asyncio.create_task(second.run()))
    await wait_until(lambda: second.owners().get("ami") is not None, what="second sees owner")
    assert running == ["first"] and not second.owns("ami")
    cut = time.monotonic()
    assert await _terminate(url, "locks") == 2  # both sessions: first must stop, not race
    await wait_for_event(stopped, what="first gave the link up")
    await wait_until(lambda: len(running) == 1, timeout=5, what="a new owner")
    assert time.monotonic() - cut < FAILOVER_TARGET
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
