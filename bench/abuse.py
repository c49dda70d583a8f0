"""Combined-load benchmark (issue 10): screen-pop latency while agents abuse the daemon.

    python bench/abuse.py [--rate 20] [--duration 20] [--agents 100] [--contacts 5000]
                          [--import-rows 50000] [--bad-logins 50] [--mail-mb 1] [--no-pin]

The daemon is the real thing (``python -m crmcomms run``, SQLite, pinned to one core),
set up as ``bench/ami.py`` does: this process, pinned to another core, is the PBX (an
AMI replay server), an SMTP server (aiosmtpd, accepting everything) and the agents on
websockets. Pops are measured as there: the time this process wrote the AMI block
after which the tracker pops an agent's screen -> the time that agent's websocket
received ``call.ringing`` (CLOCK_MONOTONIC on both ends).

Two phases of ``--rate`` calls per second for ``--duration`` seconds each:

1. **quiet**: calls only;
2. **abuse**: the same, and one second in, all at once: a supervisor imports a CSV of
   ``--import-rows`` new contacts (``POST /api/contacts/import``), ``--bad-logins``
   logins with wrong passwords arrive in parallel, and an agent sends an e-mail with
   a ``--mail-mb`` MB attachment (``POST /api/emails``, composed by the daemon and
   sent to the SMTP server).

Printed: pop p50/p90/p99/max of each phase, and of the pops written while the abuse
was under way; the daemon's own view of the same pops (``crmcomms_pop_latency_seconds``:
AMI block read -> frame handed to the websockets, without this process's share);
``/healthz`` answer times probed every 100 ms (stalls of the event loop); how long each
abuse took. Target (issue 10): p99 < 20 ms under abuse.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiosmtpd.controller import Controller
from ami import (
    AMI_SECRET,
    AMI_USER,
    SUPERVISOR,
    Agents,
    Daemon,
    connected,
    cores,
    free_port,
    load,
    login,
    play_paced,
    quiet_collector,
    seed,
    start_daemon,
    wait_ready,
)
from ami import write_config as ami_config
from ami_load import Renderer, load_templates, mix, paced

from crmcomms.ami.replay import AmiReplayServer
from crmcomms.config import load_settings

Key = tuple[str, str]


class Sink:
    """An SMTP server that accepts every message (aiosmtpd handler)."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:
        self.messages += 1
        self.bytes += len(getattr(envelope, "content", b"") or b"")
        return "250 OK"


def write_config(tmp: Path, ami_port: int, http_port: int, smtp_port: int) -> Path:
    """bench/ami.py's configuration plus one mailbox sending to the SMTP sink (its IMAP
    side points at a closed port: the mailbox worker retries in the background)."""
    path = ami_config(tmp, ami_port, http_port)
    with path.open("a", encoding="utf-8") as config:
        config.write(
            f"""
[[mailboxes]]
name = "support"
address = "support@company.test"
imap_host = "127.0.0.1"
imap_port = {free_port()}
imap_tls = "none"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
smtp_tls = "none"
"""
        )
    return path


def contacts_csv(rows: int) -> bytes:
    """``rows`` new contacts, numbers outside the seeded ones."""
    lines = ["Name,Company,Phone,E-Mail"]
    lines += [
        f"Import Person {i},Import Firma {i % 900},+49 40 7{i:08d},import{i}@example.org"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Abuse:
    """When each abuse started and ended (monotonic), and what it answered."""

    started: float = 0.0
    ended: float = 0.0
    import_s: float = 0.0
    import_report: str = ""
    logins: list[int] | None = None
    logins_s: float = 0.0
    mail_status: int = 0
    mail_s: float = 0.0


async def abuse(
    http: aiohttp.ClientSession, base: str, args: argparse.Namespace, result: Abuse
) -> None:
    """The three abuses at once; returns when all have been answered."""
    supervisor = {"Authorization": f"Bearer {await login(http, base, SUPERVISOR)}"}
    agent = {"Authorization": f"Bearer {await login(http, base, 'agent0')}"}
    csv = contacts_csv(args.import_rows)
    attachment = base64.b64encode(os.urandom(int(args.mail_mb * 2**20))).decode()
    mail = {
        "to": ["customer@example.org"],
        "subject": "The file you asked for",
        "text": "Please find it attached.",
        "attachments": [{"filename": "file.bin", "content_base64": attachment}],
    }

    async def timed(work: Awaitable[None]) -> float:
        start = time.monotonic()
        await work
        return time.monotonic() - start

    async def import_contacts() -> None:
        url = f"{base}/api/contacts/import?filename=contacts.csv"
        async with http.post(url, data=csv, headers=supervisor) as resp:
            body = await resp.json()
            result.import_report = f"{resp.status} created {body.get('created')}"

    async def bad_logins() -> None:
        async def one(i: int) -> int:
            body = {"username": f"agent{i}" if i % 2 else f"nobody{i}", "password": "wrong"}
            async with http.post(f"{base}/api/login", json=body) as resp:
                return resp.status

        result.logins = list(await asyncio.gather(*(one(i) for i in range(args.bad_logins))))

    async def send_mail() -> None:
        async with http.post(f"{base}/api/emails", json=mail, headers=agent) as resp:
            result.mail_status = resp.status

    async def nothing() -> None:
        return None

    result.started = time.monotonic()  # an abuse given as 0 is left out
    result.import_s, result.logins_s, result.mail_s = await asyncio.gather(
        timed(import_contacts() if args.import_rows else nothing()),
        timed(bad_logins() if args.bad_logins else nothing()),
        timed(send_mail() if args.mail_mb else nothing()),
    )
    result.ended = time.monotonic()


async def pop_buckets(http: aiohttp.ClientSession, base: str) -> dict[float, float]:
    """The daemon's pop-latency histogram: upper bound (s) -> cumulative count."""
    buckets: dict[float, float] = {}
    async with http.get(f"{base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("crmcomms_pop_latency_seconds_bucket{"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def server_view(before: dict[float, float], after: dict[float, float]) -> str:
    """Share of the phase's pops the daemon handed out within 5, 25 and 100 ms."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = counts.get(float("inf"), 0.0)
    if not total:
        return "no pops counted"
    bounds = (0.005, 0.025, 0.1)
    shares = [f"{counts[b] / total:.1%} within {b * 1e3:g} ms" for b in bounds if b in counts]
    return f"{total:.0f} pops, " + ", ".join(shares)


async def probe_healthz(http: aiohttp.ClientSession, base: str, times: list[float]) -> None:
    """Time ``/healthz`` every 100 ms until cancelled (a stalled loop answers late)."""
    while True:
        start = time.monotonic()
        async with http.get(f"{base}/healthz") as resp:
            await resp.read()
        times.append((time.monotonic() - start) * 1e3)
        await asyncio.sleep(0.1)


def cuts(samples: list[float], what: str = "pops") -> str:
    if len(samples) < 2:
        return f"{len(samples)} {what}"
    samples = sorted(samples)
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return (
        f"{len(samples)} {what}: p50 {q[49]:.2f} ms, p90 {q[89]:.2f} ms, "
        f"p99 {q[98]:.2f} ms, max {samples[-1]:.2f} ms"
    )


def latencies(
    written: dict[Key, float], received: dict[Key, float], window: tuple[float, float] | None
) -> list[float]:
    return [
        (received[key] - at) * 1e3
        for key, at in written.items()
        if key in received and (window is None or window[0] <= at <= window[1])
    ]


async def phase(
    name: str,
    args: argparse.Namespace,
    pbx: AmiReplayServer,
    agents: Agents,
    seed_offset: int,
    during: asyncio.Task[None] | None = None,
) -> tuple[dict[Key, float], dict[Key, float]]:
    renderer = Renderer(args.agents, args.contacts, seed=args.seed + seed_offset)
    calls = int(args.rate * args.duration)
    stream = paced(renderer, mix(load_templates(), calls), args.rate, lead=0.5)
    agents.expect(calls)
    written: dict[Key, float] = {}
    print(f"{name}: {calls} calls at {args.rate:g}/s over {stream.at[-1]:.1f} s; {load()}")
    start = time.monotonic() + 0.5
    await play_paced(stream, start, pbx, written)
    async with asyncio.timeout(300):
        await agents.all_ended.wait()
        if during is not None:
            await during
    return written, dict(agents.ringing)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    daemon_core, load_core = cores() if args.pin else (None, None)
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        async with AmiReplayServer(AMI_USER, AMI_SECRET) as pbx:
            http_port = free_port()
            config = write_config(tmp, pbx.port, http_port, smtp.port)
            settings = load_settings(config)
            await seed(settings.database_url, args.agents, args.contacts)
            daemon = start_daemon(config, tmp, http_port, daemon_core, None)
            try:
                await measure(args, pbx, daemon, sink)
            finally:
                daemon.stop()
            stalls = [line for line in daemon.log.read_text().splitlines() if " took " in line]
            for line in stalls[:20]:  # with PYTHONASYNCIODEBUG=1: asyncio's slow callbacks
                print(f"  daemon: {line[24:180]} ... {line[-22:]}")
    finally:
        smtp.stop()


async def measure(
    args: argparse.Namespace, pbx: AmiReplayServer, daemon: Daemon, sink: Sink
) -> None:
    base = daemon.base
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await wait_ready(http, daemon, pbx)
        names = [f"agent{i}" for i in range(args.agents)] + [SUPERVISOR]
        async with connected(http, base, names) as agents:
            pauses = quiet_collector()
            healthz: list[float] = []
            probe = asyncio.create_task(probe_healthz(http, base, healthz))
            before = await pop_buckets(http, base)
            written, received = await phase("quiet", args, pbx, agents, 0)
            after = await pop_buckets(http, base)
            print(f"  quiet: {cuts(latencies(written, received, None))}")
            print(f"  quiet, the daemon's view: {server_view(before, after)}")
            print(f"  quiet, /healthz: {cuts(healthz, 'probes')}")
            healthz.clear()
            result = Abuse()

            async def later() -> None:
                await asyncio.sleep(1.0)
                await abuse(http, base, args, result)

            during = asyncio.create_task(later())
            before = after
            written, received = await phase("abuse", args, pbx, agents, 1, during)
            after = await pop_buckets(http, base)
            probe.cancel()
    print(
        f"  this process (PBX, agents, SMTP sink): {pauses.collections} collections, the "
        f"longest {pauses.longest * 1e3:.1f} ms (a pause here shows as pop latency)"
    )
    window = (result.started, result.ended)
    print(f"  abuse, all pops: {cuts(latencies(written, received, None))}")
    print(
        f"  abuse, pops while it was under way ({result.ended - result.started:.1f} s): "
        f"{cuts(latencies(written, received, window))}"
    )
    print(f"  abuse, the daemon's view: {server_view(before, after)}")
    print(f"  abuse, /healthz: {cuts(healthz, 'probes')}")
    statuses = sorted(set(result.logins or []))
    print(
        f"  import of {args.import_rows} rows: {result.import_s:.1f} s ({result.import_report}); "
        f"{args.bad_logins} bad logins answered {statuses} in {result.logins_s:.1f} s; "
        f"{args.mail_mb:g} MB e-mail answered {result.mail_status} in {result.mail_s:.2f} s, "
        f"SMTP sink got {sink.messages} message(s), {sink.bytes / 2**20:.1f} MB; {load()}"
    )


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument("--bad-logins", type=int, default=50)
    parser.add_argument("--mail-mb", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="let both processes use every core"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crmcomms-abuse-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
