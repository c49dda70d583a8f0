"""AMI end-to-end benchmark: AMI socket -> tracker -> SQLite -> websocket clients.

    python bench/ami.py [--mode both|throughput|latency] [--calls 3000] [--concurrency 200]
                        [--rate 100] [--duration 20] [--agents 300] [--contacts 5000]
                        [--seed 1] [--no-pin] [--profile FILE.prof] [--py-spy PREFIX]

Two processes on one host. The daemon is the real thing, ``python -m crmcomms run``
with a generated config (SQLite in a temp dir, migrated, seeded with ``--contacts``
contacts whose numbers the calls present and ``--agents`` agents with extensions),
pinned to one core. This process, pinned to another core, is the PBX (an
:class:`~crmcomms.ami.replay.AmiReplayServer` the daemon logs in to) and the agents:
every agent plus one supervisor logs in (``POST /api/login``) and listens on
``/ws?token=``. Calls are the seven captures of ``tests/fixtures/ami`` rendered
again with fresh ids, agents and callers (see ``bench/ami_load.py``).

Throughput: ``--calls`` calls, ``--concurrency`` of them in progress at every moment
(one block of each in turn), sent as fast as the daemon reads. Measured from the
first byte written to the supervisor's websocket receiving the ``call.ended`` of the
last call; also the daemon's CPU seconds in that span (the machine may be shared).

Latency: ``--rate`` new calls per second for ``--duration`` seconds, each call at its
recorded pace. Screen-pop latency = time this process wrote the AMI block after which
the tracker pops the agent's screen -> time that agent's websocket received
``call.ringing`` for that call (``time.monotonic``: CLOCK_MONOTONIC is system-wide on
Linux, so both ends read the same clock).

Both modes then check the database: one row per call sent, none missing or extra.
``--no-pin`` leaves both processes free to use every core. ``--profile`` runs the
daemon under cProfile and prints its top entries (cProfile
counts every resumption of a coroutine as a call); ``--py-spy`` samples the daemon
with py-spy (``pip install py-spy``) during the timed part of each mode and prints
where the time goes, by function (self and inclusive).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import os
import pstats
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from ami_load import (
    Paced,
    Renderer,
    agent_extension,
    contact_number,
    interleaved,
    load_templates,
    mix,
    paced,
)
from argon2 import PasswordHasher

from core.db import create_engine, session_factory
from core.dbthread import DbWorker
from core.importer import ImportOptions, RawRow, import_rows
from core.migrate import upgrade
from core.models import Agent, AgentExtension
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.config import load_settings

AMI_USER, AMI_SECRET = "crm", "crmsecret"
PASSWORD = "bench-password"
TOO_SLOW = 4000  # the daemon's close code for a client that fell behind
SUPERVISOR = "sue"
FIRST = ["Anna", "Jonas", "Lena", "Lukas", "Marie", "Paul", "Jürgen", "Emma", "Ben", "Mia"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"]


# -- set-up: config, database, daemon ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp: Path, ami_port: int, http_port: int) -> Path:
    path = tmp / "crmcomms.toml"
    path.write_text(
        f"""[general]
data_dir = "{tmp / "data"}"
log_level = "INFO"

[http]
host = "127.0.0.1"
port = {http_port}
# every simulated agent connects from 127.0.0.1: lift the per-address cap
max_connections_per_address = 10000

[ami]
enabled = true
host = "127.0.0.1"
port = {ami_port}
username = "{AMI_USER}"
secret = "{AMI_SECRET}"
recordings_dir = "{tmp / "recordings"}"
""",
        encoding="utf-8",
    )
    return path


async def seed(database_url: str, agents: int, contacts: int) -> None:
    """Migrate; add the agents (one cheap Argon2 hash for all) and contacts (bulk import)."""
    engine = create_engine(database_url)
    await upgrade(engine)
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with session_factory(engine).begin() as session:
        for index in range(agents):
            agent = Agent(name=f"agent{index}", email="", role="agent", password_hash=cheap)
            agent.extensions = [AgentExtension(extension=agent_extension(index))]
            session.add(agent)
        session.add(Agent(name=SUPERVISOR, email="", role="supervisor", password_hash=cheap))
    worker = DbWorker(engine)
    rows = [_contact(i) for i in range(contacts)]
    report = await import_rows(worker, rows, ImportOptions("DE"))
    await worker.close()
    await engine.dispose()
    if report.created != contacts:
        raise RuntimeError(f"seeded {report.created} of {contacts} contacts: {report.errors[:3]}")


def _contact(index: int) -> RawRow:
    return RawRow(
        row=index + 2,
        first_name=FIRST[index % len(FIRST)],
        last_name=LAST[index // len(FIRST) % len(LAST)],
        organization=f"Firma {index % 700}" if index % 3 else "",
        phones=(("work", contact_number(index)),),
        emails=((("work", f"c{index}@example.com"),) if index % 2 else ()),
    )


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` (its main process) in MB; NaN if unknown."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Daemon:
    """The daemon process, pinned to ``core``."""

    process: subprocess.Popen[bytes]
    base: str
    log: Path
    profile: Path | None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon (all threads) so far."""
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the daemon so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def context_switches(self) -> int:
        """Voluntary + involuntary context switches of the daemon's main thread so far."""
        status = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        return sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_daemon(
    config: Path, tmp: Path, http_port: int, core: int | None, profile: Path | None
) -> Daemon:
    run = ["-m", "crmcomms", "run", "--config", str(config)]
    if profile is not None:
        run = ["-m", "cProfile", "-o", str(profile), *run]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMCOMMS_")}
    log = tmp / "daemon.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, *run], stdout=out, stderr=out, env=env)
    if core is not None:
        os.sched_setaffinity(process.pid, {core})
    return Daemon(process, f"http://127.0.0.1:{http_port}", log, profile)


def cores() -> tuple[int | None, int | None]:
    """(daemon core, load core): two distinct CPUs when we have them."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return available[0], available[1]


# -- agents on websockets ----------------------------------------------------------


@dataclass
class Agents:
    """Every websocket client's arrivals, timed with ``time.monotonic``."""

    expected_calls: int = 0
    ringing: dict[tuple[str, str], float] = field(default_factory=dict)
    pop_bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # call.ringing frames
    ended: set[str] = field(default_factory=set)
    last_ended_at: float = 0.0
    frames: int = 0
    closed: list[str] = field(default_factory=list)  # sockets the daemon closed on us
    closing: bool = False
    all_ended: asyncio.Event = field(default_factory=asyncio.Event)
    seq: dict[str, int] = field(default_factory=dict)
    epoch: str = ""
    catch_ups: int = 0  # reconnects after the daemon dropped a client as too slow
    sockets: dict[str, aiohttp.ClientWebSocketResponse] = field(default_factory=dict)
    reconnect: Callable[[str, str], Awaitable[aiohttp.ClientWebSocketResponse]] | None = None

    def expect(self, calls: int) -> None:
        self.expected_calls = calls
        self.ended.clear()
        self.ringing.clear()
        self.pop_bytes.clear()
        self.all_ended.clear()

    async def listen(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        """Collect one agent's frames; after a 'too slow' close, catch up with since."""
        while True:
            await self._receive(ws, name)
            if self.closing or ws.close_code != TOO_SLOW or self.reconnect is None:
                break
            self.catch_ups += 1
            ws = await self.reconnect(name, f"&since={self.seq[name]}&epoch={self.epoch}")
            self.sockets[name] = ws
        if not self.closing:
            self.closed.append(f"{name}: {ws.close_code}")

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        supervisor = name == SUPERVISOR
        async for message in ws:
            now = time.monotonic()
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            self.frames += 1
            frame = orjson.loads(message.data)
            kind = frame["type"]
            self.seq[name] = max(self.seq.get(name, 0), frame.get("seq", 0))
            if kind == "hello":
                self.epoch = frame["epoch"]
            elif kind == "call.ringing" and not supervisor:
                key = (frame["call"]["linkedid"], frame["agent"])
                self.ringing.setdefault(key, now)
                self.pop_bytes[key] = len(message.data)
            elif kind == "call.ended" and supervisor:
                self.ended.add(frame["call"]["linkedid"])
                self.last_ended_at = now
                if len(self.ended) >= self.expected_calls:
                    self.all_ended.set()


async def login(http: aiohttp.ClientSession, base: str, name: str) -> str:
    body = {"username": name, "password": PASSWORD}
    async with http.post(f"{base}/api/login", json=body) as resp:
        resp.raise_for_status()
        token: str = (await resp.json())["token"]
        return token


@contextlib.asynccontextmanager
async def connected(
    http: aiohttp.ClientSession, base: str, names: Sequence[str]
) -> AsyncIterator[Agents]:
    """Log every name in, open its websocket and listen until the block exits."""
    gate = asyncio.Semaphore(32)

    tokens: dict[str, str] = {}

    async def open_one(name: str, query: str = "") -> aiohttp.ClientWebSocketResponse:
        async with gate:
            if name not in tokens:
                tokens[name] = await login(http, base, name)
            url = f"{base}/ws?token={tokens[name]}{query}"
            return await http.ws_connect(url, heartbeat=None)

    sockets = await asyncio.gather(*(open_one(name) for name in names))
    agents = Agents(reconnect=open_one)
    agents.sockets.update(zip(names, sockets, strict=True))
    tasks = [
        asyncio.create_task(agents.listen(ws, n)) for ws, n in zip(sockets, names, strict=True)
    ]
    try:
        yield agents
    finally:
        agents.closing = True
        await asyncio.gather(*(ws.close() for ws in agents.sockets.values()))
        await asyncio.gather(*tasks, return_exceptions=True)


async def ami_events_total(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("crmcomms_ami_events_total "):
                return float(line.split()[1])
    return 0.0


async def wait_ready(http: aiohttp.ClientSession, daemon: Daemon, pbx: AmiReplayServer) -> None:
    async with asyncio.timeout(60):
        while True:
            if daemon.process.poll() is not None:
                raise RuntimeError(f"daemon exited: {daemon.log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{daemon.base}/healthz") as resp:
                    if resp.status == 200 and pbx.logins >= 1:
                        return
            await asyncio.sleep(0.1)


async def wait_consumed(http: aiohttp.ClientSession, base: str, events: float) -> float:
    """Poll /metrics until the daemon counted ``events`` AMI events; return the count."""
    for _ in range(2400):  # another process's counter: poll, 2 minutes at most
        seen = await ami_events_total(http, base)
        if seen >= events:
            return seen
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the daemon counted {seen:.0f} of {events:.0f} AMI events")


# -- the two modes -----------------------------------------------------------------


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


async def throughput(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    daemon: Daemon,
    pbx: AmiReplayServer,
    agents: Agents,
) -> list[str]:
    renderer = Renderer(args.agents, args.contacts, seed=args.seed)
    stream = interleaved(renderer, mix(load_templates(), args.calls), args.concurrency)
    before = await ami_events_total(http, daemon.base)
    agents.expect(len(stream.linkedids))
    print(
        f"throughput: {args.calls} calls, {stream.events} events, "
        f"{sum(map(len, stream.chunks)) / 1e6:.0f} MB, {args.concurrency} in progress; "
        f"{load()}",
        flush=True,
    )
    with sampled(daemon, args.py_spy, "throughput"):
        (user0, sys0), switches0 = daemon.cpu_split(), daemon.context_switches()
        cpu0, start = daemon.cpu_seconds(), time.monotonic()
        for chunk in stream.chunks:
            await pbx.send_raw(chunk)
        sent = time.monotonic()
        async with asyncio.timeout(args.timeout):
            await agents.all_ended.wait()
        cpu = daemon.cpu_seconds() - cpu0
        (user1, sys1), switches1 = daemon.cpu_split(), daemon.context_switches()
    elapsed = agents.last_ended_at - start
    consumed = await wait_consumed(http, daemon.base, before + stream.events) - before
    print(
        f"  sent in {sent - start:.2f} s; last call.ended after {elapsed:.2f} s; "
        f"daemon counted {consumed:.0f} events"
    )
    print(
        f"  {stream.events / elapsed:,.0f} AMI events/s end to end, "
        f"{len(stream.linkedids) / elapsed:,.0f} calls/s; daemon CPU {cpu:.2f} s "
        f"({stream.events / cpu:,.0f} events per CPU-second, {cpu / elapsed:.0%} of its core); "
        f"{load()}"
    )
    print(
        f"  daemon CPU user {user1 - user0:.2f} s, system {sys1 - sys0:.2f} s; "
        f"{switches1 - switches0} context switches of its main thread"
    )
    return stream.linkedids


async def latency(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    daemon: Daemon,
    pbx: AmiReplayServer,
    agents: Agents,
) -> list[str]:
    renderer = Renderer(args.agents, args.contacts, seed=args.seed + 1)
    calls = int(args.rate * args.duration)
    stream = paced(renderer, mix(load_templates(), calls), args.rate, lead=0.5)
    agents.expect(calls)
    written: dict[tuple[str, str], float] = {}
    print(
        f"latency: {calls} calls at {args.rate:g}/s, {len(stream.at)} events over "
        f"{stream.at[-1]:.1f} s, {args.agents} agents on websockets; {load()}",
        flush=True,
    )
    memory: list[tuple[float, float]] = []
    pauses = quiet_collector()
    with sampled(daemon, args.py_spy, "latency"):
        cpu0, start = daemon.cpu_seconds(), time.monotonic() + 0.5
        sampler = asyncio.create_task(sample_rss(daemon, start, memory))
        await play_paced(stream, start, pbx, written)
        async with asyncio.timeout(120):
            await agents.all_ended.wait()
        wall = time.monotonic() - start
        cpu = daemon.cpu_seconds() - cpu0
        sampler.cancel()
    report_latency(written, agents.ringing)
    report_windows(written, agents, start, memory, args.window)
    gc.callbacks.remove(pauses.observe)
    print(
        f"  this process (the PBX and the agents): {pauses.collections} collections, the "
        f"longest {pauses.longest * 1e3:.1f} ms (a pause here shows as pop latency)"
    )
    print(
        f"  {len(stream.at) / wall:,.0f} events/s offered on average; "
        f"daemon CPU {cpu / wall:.0%} of its core; {load()}"
    )
    return stream.linkedids


async def play_paced(
    stream: Paced, start: float, pbx: AmiReplayServer, written: dict[tuple[str, str], float]
) -> None:
    """Write each block when due (all blocks due at once in one write), noting pop times."""
    index, total = 0, len(stream.at)
    while index < total:
        now = time.monotonic() - start
        end = bisect.bisect_right(stream.at, now, lo=index)
        if end == index:
            await asyncio.sleep(stream.at[index] - now)
            continue
        at = time.monotonic()
        for pops in stream.pops[index:end]:
            for key in pops:
                written[key] = at
        await pbx.send_raw(b"".join(stream.data[index:end]))
        index = end


@dataclass
class Pauses:
    """This process's garbage-collector pauses while it measures."""

    collections: int = 0
    longest: float = 0.0
    _started: float = 0.0

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.collections += 1
        self.longest = max(self.longest, time.perf_counter() - self._started)


def quiet_collector() -> Pauses:
    """Keep this process's collector off what it rendered in advance: a 10-minute run
    holds millions of objects, and a full collection over them stalled the agents'
    websocket reads for 350 ms, counted as pop latency. Returns its pause recorder."""
    gc.collect()
    gc.freeze()
    pauses = Pauses()
    gc.callbacks.append(pauses.observe)
    return pauses


async def sample_rss(daemon: Daemon, start: float, into: list[tuple[float, float]]) -> None:
    """The daemon's RSS (MB) every 10 s, with the time since ``start``."""
    while True:
        into.append((time.monotonic() - start, rss_mb(daemon.process.pid)))
        await asyncio.sleep(10)


def report_windows(
    written: dict[tuple[str, str], float],
    agents: Agents,
    start: float,
    memory: list[tuple[float, float]],
    window: float,
) -> None:
    """Pop latency and the daemon's RSS per ``window`` seconds of the run: a tail or
    a memory creep that builds up over time shows here, not in the totals. The pops'
    mean size shows the cards filling up as the callers' history grows (the daemon
    keeps each live call's card and its last 10,000 events)."""
    received = agents.ringing
    by_window: dict[int, list[float]] = {}
    sizes: dict[int, list[int]] = {}
    for key, at in written.items():
        if key in received:
            index = int((at - start) // window)
            by_window.setdefault(index, []).append((received[key] - at) * 1e3)
            sizes.setdefault(index, []).append(agents.pop_bytes[key])
    rss: dict[int, float] = {}
    for at, mb in memory:
        rss[int(at // window)] = mb  # the last sample of each window
    print(
        f"  per {window:g} s: p50 / p99 / max pop latency (ms), daemon RSS at its end (MB), "
        "mean call.ringing frame (bytes)"
    )
    for index in sorted(by_window):
        samples = sorted(by_window[index])
        if len(samples) < 2:
            continue
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        print(
            f"    {index * window:5.0f} s  {cuts[49]:7.2f} {cuts[98]:8.2f} {samples[-1]:8.2f}"
            f"   {rss.get(index, float('nan')):6.0f}   {statistics.fmean(sizes[index]):6.0f}"
        )
    worst = sorted(
        ((received[key] - at) * 1e3, at - start) for key, at in written.items() if key in received
    )[-10:]
    print("  slowest pops (ms at s): " + ", ".join(f"{ms:.0f}@{t:.1f}" for ms, t in worst[::-1]))


def report_latency(
    written: dict[tuple[str, str], float], received: dict[tuple[str, str], float]
) -> None:
    samples = sorted((received[key] - at) * 1e3 for key, at in written.items() if key in received)
    missing = len(written) - len(samples)
    if len(samples) < 2:
        print(f"  screen pops: {len(samples)} received, {missing} missing")
        return
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    print(
        f"  screen-pop latency over {len(samples)} pops ({missing} missing): "
        f"p50 {cuts[49]:.2f} ms, p90 {cuts[89]:.2f} ms, p99 {cuts[98]:.2f} ms, "
        f"max {samples[-1]:.2f} ms"
    )


# -- profiles --------------------------------------------------------------------


@contextlib.contextmanager
def sampled(daemon: Daemon, output: Path | None, mode: str) -> Iterator[None]:
    """Sample the daemon with py-spy while the block runs; print the top functions."""
    if output is None:
        yield
        return
    raw = output.with_suffix(f".{mode}.folded")
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy_bin, "record", "--pid", str(daemon.process.pid), "--rate", "200"]
    command += ["--nonblocking", "--format", "raw", "--output", str(raw)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    print_folded(raw)


def print_folded(path: Path, top: int = 25) -> None:
    """Self and inclusive sample shares by function, from py-spy's folded stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue  # py-spy's output can hold a frame name broken across lines
        frames = [_short(frame) for frame in stack.split(";")]
        total += int(samples)
        own[frames[-1]] += int(samples)
        for frame in set(frames):
            inclusive[frame] += int(samples)
    print(f"  py-spy: {total} samples ({path})")
    for title, counts in (("self", own), ("inclusive", inclusive)):
        print(f"  top {top} by {title} time:")
        for frame, count in counts.most_common(top):
            print(f"    {count / total:6.1%}  {frame}")


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})"


# -- after the run -----------------------------------------------------------------


def check_database(path: Path, linkedids: Sequence[str]) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = [row[0] for row in db.execute("SELECT linkedid FROM calls")]
        statuses = dict(db.execute("SELECT status, count(*) FROM calls GROUP BY status"))
    sent, stored = set(linkedids), set(rows)
    print(
        f"database: {len(rows)} call rows for {len(linkedids)} calls sent; "
        f"missing {len(sent - stored)}, extra {len(stored - sent)}, "
        f"duplicates {len(rows) - len(stored)}; by status {statuses}"
    )
    if sent != stored or len(rows) != len(stored) or len(sent) != len(linkedids):
        raise SystemExit("FAIL: the call log does not match the calls sent")


def print_profile(path: Path, top: int = 30) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    daemon_core, load_core = cores() if args.pin else (None, None)
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    linkedids: list[str] = []
    async with AmiReplayServer(AMI_USER, AMI_SECRET) as pbx:
        http_port = free_port()
        config = write_config(tmp, pbx.port, http_port)
        settings = load_settings(config)
        started = time.monotonic()
        await seed(settings.database_url, args.agents, args.contacts)
        print(
            f"seeded {args.agents} agents, {args.contacts} contacts in "
            f"{time.monotonic() - started:.1f} s; daemon on CPU {daemon_core}, "
            f"load on CPU {load_core}",
            flush=True,
        )
        daemon = start_daemon(config, tmp, http_port, daemon_core, args.profile)
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                await wait_ready(http, daemon, pbx)
                names = [f"agent{i}" for i in range(args.agents)] + [SUPERVISOR]
                async with connected(http, daemon.base, names) as agents:
                    if args.mode in ("both", "throughput"):
                        linkedids += await throughput(args, http, daemon, pbx, agents)
                    if args.mode in ("both", "latency"):
                        linkedids += await latency(args, http, daemon, pbx, agents)
                if agents.closed:
                    print(f"websockets closed by the daemon: {agents.closed[:5]}")
                if agents.catch_ups:
                    print(
                        f"clients dropped as too slow that caught up with since: {agents.catch_ups}"
                    )
        except TimeoutError:
            errors = [line for line in daemon.log.read_text().splitlines() if "Error" in line]
            print("timed out; daemon errors:", *errors[:10], sep="\n")
            raise
        finally:
            daemon.stop()
    check_database(settings.general.data_dir / "crmcomms.sqlite3", linkedids)
    if args.profile is not None:
        print_profile(args.profile)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("both", "throughput", "latency"), default="both")
    parser.add_argument("--calls", type=int, default=3000, help="throughput mode")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the last call")
    parser.add_argument("--concurrency", type=int, default=200, help="calls in progress")
    parser.add_argument("--rate", type=float, default=100.0, help="latency mode: calls/s")
    parser.add_argument("--duration", type=float, default=20.0, help="latency mode: seconds")
    parser.add_argument(
        "--window", type=float, default=60.0, help="latency mode: report per this many seconds"
    )
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="let both processes use every core"
    )
    parser.add_argument("--profile", type=Path, help="run the daemon under cProfile into FILE")
    parser.add_argument("--py-spy", type=Path, help="sample the daemon with py-spy (FILE.*)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crmcomms-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
