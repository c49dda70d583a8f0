"""Event bus benchmark: pops through PostgreSQL to websocket agents on two daemon processes.

    python bench/bus.py --postgres postgresql+asyncpg://crm@127.0.0.1:PORT/
                        [--agents 1000] [--rate 100] [--duration 20] [--burst 50000]

Two real daemons (``python -m crmcomms run``, no AMI, no mailboxes) share a fresh
database on the given PostgreSQL server. This process is the third instance, the
one that would own the AMI link: it publishes through a :class:`~crmcomms.pgbus.PgBus`
of its own, and it is every agent: ``--agents`` agents plus a supervisor per daemon
log in and listen on ``/ws``, half of them on each daemon.

- **pop latency**: ``--rate`` calls per second for ``--duration`` seconds, each a
  ``call.ringing`` to one agent (plus ``call.answered`` and ``call.ended`` to the same
  agent, as a call makes); latency = ``publish()`` here -> that agent's websocket
  received it (one monotonic clock on Linux). The same load is then sent through
  the in-process hub of a web app in this process (``--agents`` clients on it), the
  single-process path, for comparison.
- **memory per connection**: the daemons' RSS before and after the agents connect.
- **events/s**: ``--burst`` events published at once; time until both supervisors
  received the last one.
- **stages** of the bus's pop latency: publish -> the batch committed (this process's
  writer: wake-up, one statement), committed -> ``NOTIFY`` heard by a listener of this
  process (PostgreSQL), committed -> the agent's websocket (the daemons: notification,
  read, fan-out, socket).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from ami import rss_mb
from argon2 import PasswordHasher

from core.agents import AgentIdentity
from core.db import create_engine, session_factory
from core.migrate import upgrade
from core.models import Agent, AgentExtension
from crmcomms.health import Health
from crmcomms.pg import dsn_of
from crmcomms.pgbus import PgBus
from crmcomms.push import Audience, PushHub
from crmcomms.web.ws import websocket_handler

PASSWORD = "bench-password"
Publish = Callable[[str, dict[str, Any], Audience], object]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def create_database(server: str) -> str:
    name = f"bench_bus_{uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn_of(server.rstrip("/") + "/postgres"))
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return server.rstrip("/") + f"/{name}"


async def seed(url: str, agents: int) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with session_factory(engine).begin() as session:
        for index in range(agents):
            agent = Agent(name=f"agent{index}", email="", role="agent", password_hash=cheap)
            agent.extensions = [AgentExtension(extension=str(1000 + index))]
            session.add(agent)
        session.add(Agent(name="sup", email="", role="supervisor", password_hash=cheap))
    await engine.dispose()


def start_daemon(tmp: Path, url: str, n: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / f"d{n}.toml"
    config.write_text(
        f'[general]\ndata_dir = "{tmp / f"d{n}"}"\n[http]\nhost = "127.0.0.1"\nport = {port}\n'
        # every agent comes from this one address: lift the per-address cap
        "max_connections = 10000\nmax_connections_per_address = 10000\n"
        f'[database]\nurl = "{url}"\n'
    )
    log = (tmp / f"d{n}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmcomms", "run", "--config", str(config)], stderr=log
    )
    return proc, f"http://127.0.0.1:{port}"


class Agents:
    """Websocket clients: when each frame of interest arrived."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.arrivals: list[tuple[int, float, float]] = []  # seq, published, received
        self.last_seq: dict[str, int] = {}
        self.changed = asyncio.Event()

    async def listen(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        async for message in ws:
            now = time.monotonic()
            frame = orjson.loads(message.data)
            if "t" in frame and not name.startswith("sup"):
                self.latencies.append(now - frame["t"])
                self.arrivals.append((frame["seq"], frame["t"], now))
            self.last_seq[name] = frame.get("seq", 0)
            self.changed.set()


class Stages:
    """When each batch of this process's writer committed, and when a listener of this
    process heard its notification (both by the batch's last seq)."""

    def __init__(self, bus: PgBus) -> None:
        self.committed: dict[int, float] = {}
        self.heard: dict[int, float] = {}
        insert = bus._insert

        self.last = 0  # this process is the only writer: the batches number on from here

        async def timed(conn: Any, batch: Any) -> None:
            await insert(conn, batch)
            self.last += len(batch)
            self.committed[self.last] = time.monotonic()

        bus._insert = timed  # type: ignore[method-assign]

    def notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        last = orjson.loads(payload)[-1][0] if payload.startswith("[") else int(payload)
        self.heard[last] = time.monotonic()

    def report(self, arrivals: list[tuple[int, float, float]]) -> None:
        ends = sorted(self.committed)
        written, notify, pushed = [], [], []
        for seq, published, received in arrivals:
            last = ends[bisect.bisect_left(ends, seq)] if seq <= ends[-1] else None
            if last is None:
                continue
            written.append(self.committed[last] - published)
            pushed.append(received - self.committed[last])
            if last in self.heard:
                notify.append(self.heard[last] - self.committed[last])
        report("  stage publish -> committed", written)
        report("  stage committed -> NOTIFY heard here", notify)
        report("  stage committed -> agent's websocket", pushed)


@contextlib.asynccontextmanager
async def connected(
    http: aiohttp.ClientSession, spots: Sequence[tuple[str, str]], agents: Agents
) -> AsyncIterator[None]:
    """Every (base URL, agent name) logged in and listening until the block exits."""
    gate = asyncio.Semaphore(32)
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    tasks: list[asyncio.Task[None]] = []

    async def open_one(base: str, name: str) -> None:
        async with gate:
            body = {"username": name, "password": PASSWORD}
            async with http.post(f"{base}/api/login", json=body) as resp:
                token = (await resp.json())["token"]
            bearer = {"Authorization": f"Bearer {token}"}
            ws = await http.ws_connect(f"{base}/ws", headers=bearer, heartbeat=None)
        sockets.append(ws)  # read at once: the server's heartbeat wants pongs
        tasks.append(asyncio.create_task(agents.listen(ws, f"{name}@{base}")))

    await asyncio.gather(*(open_one(base, name) for base, name in spots))
    try:
        yield
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
        await asyncio.gather(*tasks, return_exceptions=True)


async def paced(publish: Publish, agents: int, rate: float, duration: float) -> int:
    """``rate`` calls/s, each ringing, answered and ended for one agent."""
    sent, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < duration:
        due = int(elapsed * rate) + 1
        while sent < due:
            extension = str(1000 + sent % agents)
            audience = Audience.of(extension)
            for kind in ("call.ringing", "call.answered", "call.ended"):
                publish(kind, {"t": time.monotonic(), "agent": extension}, audience)
            sent += 1
        await asyncio.sleep(max(0.0, (sent / rate) - (time.monotonic() - start)))
    return sent


def report(label: str, latencies: list[float]) -> None:
    if not latencies:
        print(f"{label}: no events")
        return
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    print(
        f"{label}: {len(ordered)} events, p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, "
        f"max {ordered[-1] * 1000:.2f} ms, mean {statistics.fmean(ordered) * 1000:.2f} ms"
    )


async def in_process(args: argparse.Namespace) -> None:
    """The same load through a hub and websockets in this process (one process)."""
    hub = PushHub()
    app = web.Application()

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"token": (await request.json())["username"]})

    async def identity(token: str) -> AgentIdentity:
        index = int(token.removeprefix("agent"))
        return AgentIdentity(index, token, "agent", frozenset({str(1000 + index)}))

    app.router.add_post("/api/login", login)
    app.router.add_get("/ws", websocket_handler(hub, identity))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    agents = Agents()
    spots = [(base, f"agent{i}") for i in range(args.agents)]
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        connected(http, spots, agents),
    ):
        await paced(hub.publish, args.agents, args.rate, args.duration)
        await asyncio.sleep(0.5)
    report(f"in-process hub, {args.rate:g} calls/s", agents.latencies)
    await runner.cleanup()


async def through_bus(args: argparse.Namespace, url: str, tmp: Path) -> None:
    daemons = [start_daemon(tmp, url, n) for n in range(2)]
    hub = PushHub()
    bus = PgBus(url, hub, Health())
    stages = Stages(bus)
    await bus.start()
    stages.last = hub.current_seq
    runner = asyncio.create_task(bus.run())
    listener = await asyncpg.connect(dsn_of(url))
    await listener.add_listener("crmcomms_events", stages.notified)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for _, base in daemons:
                await wait_up(http, base)
            before = [rss_mb(p.pid) for p, _ in daemons]
            spots = [(daemons[i % 2][1], f"agent{i}") for i in range(args.agents)]
            spots += [(base, "sup") for _, base in daemons]
            agents = Agents()
            async with connected(http, spots, agents):
                await asyncio.sleep(2)
                after = [rss_mb(p.pid) for p, _ in daemons]
                per = (sum(after) - sum(before)) * 1024 / args.agents
                print(
                    f"memory: {args.agents} agents over 2 daemons, RSS {before} -> {after} MB,"
                    f" {per:.1f} KB per connection"
                )
                await paced(bus.publish, args.agents, args.rate, args.duration)
                await asyncio.sleep(1.0)
                report(f"through the bus, {args.rate:g} calls/s", agents.latencies)
                stages.report(agents.arrivals)
                await burst(bus, url, agents, args.burst, [base for _, base in daemons])
    finally:
        await listener.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        for proc, _ in daemons:
            proc.terminate()
            proc.wait(30)


async def burst(bus: PgBus, url: str, agents: Agents, count: int, bases: Sequence[str]) -> None:
    """``count`` events at once; seconds until both daemons' supervisors have the last."""
    start = time.monotonic()
    for i in range(count):
        bus.publish("task.created", {"i": i}, Audience.supervisors_only())
    while bus.pending:
        await bus.written_more()
    conn = await asyncpg.connect(dsn_of(url))
    last = await conn.fetchval("SELECT max(seq) FROM events")
    await conn.close()
    names = [f"sup@{base}" for base in bases]
    while any(agents.last_seq.get(name, 0) < last for name in names):
        agents.changed.clear()
        await agents.changed.wait()
    elapsed = time.monotonic() - start
    print(
        f"bus throughput: {count} events written and delivered to 2 daemons' supervisors "
        f"in {elapsed:.2f} s = {count / elapsed:,.0f} events/s"
    )


async def wait_up(http: aiohttp.ClientSession, base: str) -> None:
    async with asyncio.timeout(120):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)


async def main_async(args: argparse.Namespace) -> None:
    url = await create_database(args.postgres)
    await seed(url, args.agents)
    tmp = Path(tempfile.mkdtemp(prefix="bench-bus-"))
    print(f"database {url}, {os.cpu_count()} cores, load {os.getloadavg()}")
    await through_bus(args, url, tmp)
    await in_process(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", required=True, help="server URL, database name left off")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="calls/s (3 events each)")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=50_000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
