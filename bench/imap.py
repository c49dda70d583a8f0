"""Issue 4 benchmark: initial IMAP sync of 10,000 realistic messages, ours vs mbsync.

    /work/venv/bin/python bench/imap.py [--messages 10000] [--processes 2] [--postgres URL]

Starts a private Dovecot (as the tests do), fills INBOX's maildir with
realistic messages (plain, multipart/alternative, 10 % with a PDF), then:
1. mbsync (Debian isync, default FSync) pulls the folder into a local maildir;
2. our MailboxWorker syncs it into a fresh SQLite database (and PostgreSQL
   with --postgres), reading headers and parsing bodies on ``--processes``
   processes, running as in the daemon (``crmcomms.runtime``: uvloop, and the
   heap settled once set up). Timed: the initial sync (round done: every message stored with
   its raw bytes and headers, deduplicated, threaded, linked, its UID
   committed: what mbsync's figure compares to), then until every body and
   attachment is parsed too (the second phase, which follows the round);
3. one more message is delivered and the time until ``email.received`` is
   published is measured (IDLE).
Prints messages/s, the ratio to mbsync and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.agents import AgentIdentity
from core.migrate import upgrade
from crmcomms.app import build_services, mailbox_worker
from crmcomms.config import MailboxSettings, parse_settings
from crmcomms.runtime import serve, settle_heap
from tests.mail_servers import DovecotServer, run_dovecot

WORDS = (
    "Angebot Rechnung Lieferung Bestellung Termin bitte danke Grüße größer Straße "
    "invoice order delivery support ticket please thanks regards price quantity "
    "the and with for from your our this that will have been"
).split()
SUPERVISOR = AgentIdentity(1, "bench", "supervisor", frozenset())


def realistic(i: int, rng: random.Random) -> bytes:
    """Message ``i``: a customer mail, half with HTML, every tenth with a PDF."""
    mime = EmailMessage()
    customer = i % 400
    mime["From"] = f"Kunde {customer} <kunde{customer}@firma{customer % 50}.de>"
    mime["To"] = "Support <support@company.test>"
    mime["Subject"] = ("Re: " if i % 3 == 0 else "") + f"Bestellung {i % 700}: " + _words(rng, 4)
    when = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=37 * i)
    mime["Date"] = format_datetime(when)
    mime["Message-ID"] = f"<{i}.{customer}@firma{customer % 50}.de>"
    body = "\n".join(_words(rng, 12) for _ in range(rng.randint(5, 60)))
    mime.set_content(body)
    if i % 2 == 0:
        paragraphs = "".join(f"<p>{line}</p>" for line in body.splitlines())
        mime.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html")
    if i % 10 == 0:
        pdf = rng.randbytes(rng.randint(20_000, 150_000))
        mime.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"r{i}.pdf")
    return mime.as_bytes().replace(b"\n", b"\r\n")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def fill_maildir(server: DovecotServer, count: int) -> int:
    """Write ``count`` messages straight into INBOX's maildir; returns total bytes."""
    cur = server.root / "mail" / server.user / "cur"
    for sub in ("cur", "new", "tmp"):
        (cur.parent / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(4)
    total = 0
    for i in range(count):
        raw = realistic(i, rng)
        total += len(raw)
        (cur / f"{1700000000 + i}.M{i}P1.bench:2,").write_bytes(raw)
    owner = (server.root / "mail").stat()
    for path in (server.root / "mail").rglob("*"):
        os.chown(path, owner.st_uid, owner.st_gid)
    server.client().logout()  # let Dovecot index the folder before timing anything
    return total


def run_mbsync(server: DovecotServer, work: Path) -> float:
    """Seconds mbsync needs to pull INBOX into an empty local maildir."""
    local = work / "maildir"
    local.mkdir()
    conf = work / "mbsyncrc"
    conf.write_text(
        f"IMAPAccount bench\nHost {server.host}\nPort {server.port}\nUser {server.user}\n"
        f"Pass {server.password}\nSSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount bench\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n"
        "Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\n"
        "Create Near\nSync Pull\nSyncState *\n"
    )
    start = time.perf_counter()
    subprocess.run(["mbsync", "-c", str(conf), "bench"], check=True, capture_output=True)
    return time.perf_counter() - start


def measure(
    server: DovecotServer, url: str, data: Path, executor: Executor | None
) -> tuple[float, float, float]:
    """``run_ours`` on the daemon's event loop (``crmcomms.runtime.serve``: uvloop)."""
    timings: list[tuple[float, float, float]] = []

    async def main() -> None:
        timings.append(await run_ours(server, url, data, executor))

    serve(main())
    return timings[0]


async def run_ours(
    server: DovecotServer, url: str, data: Path, executor: Executor | None
) -> tuple[float, float, float]:
    """Seconds for the initial sync, until every body is parsed too, to notice one new
    message."""
    raw = {"general": {"data_dir": str(data)}, "database": {"url": url}}
    svc = build_services(parse_settings(raw, env={}))
    await upgrade(svc.engine)
    box = MailboxSettings(
        name="bench", address="support@company.test", imap_host=server.host,
        imap_port=server.port, imap_tls="none", username=server.user,
        password=server.password, folders=("INBOX",), poll_interval=600,
    )  # fmt: skip
    worker = mailbox_worker(svc, box, executor=executor)
    subscription = svc.hub.subscribe(SUPERVISOR, None, None)
    settle_heap()  # as the daemon does once it is up
    task = asyncio.create_task(worker.run())
    try:
        start = time.perf_counter()
        await worker.round_done.wait()
        initial = time.perf_counter() - start
        await worker.bodies_done.wait()
        bodies = time.perf_counter() - start
        await asyncio.to_thread(server.append, realistic(10**6, random.Random(9)))
        start = time.perf_counter()
        await asyncio.wait_for(subscription.next_frame(), timeout=30)
        notice = time.perf_counter() - start
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await svc.engine.dispose()
    return initial, bodies, notice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--postgres", help="postgresql+asyncpg:// URL of an empty database")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crmcomms-bench-"))
    executor = ProcessPoolExecutor(args.processes) if args.processes > 1 else None
    try:
        with run_dovecot() as server:
            size = fill_maildir(server, args.messages)
            print(f"{args.messages} messages, {size / 1e6:.0f} MB in Dovecot")
            mbsync = run_mbsync(server, work)
            print(f"mbsync (FSync default):   {mbsync:6.2f} s  {args.messages / mbsync:7.0f} msg/s")
            targets = [("SQLite", f"sqlite+aiosqlite:///{work}/bench.sqlite3")]
            if args.postgres:
                targets.append(("PostgreSQL", args.postgres))
            for name, url in targets:
                initial, bodies, notice = measure(server, url, work / name, executor)
                rate = args.messages / initial
                print(
                    f"crmcomms -> {name:10s} {initial:6.2f} s  {rate:7.0f} msg/s  "
                    f"ratio {mbsync / initial:4.2f}  new message noticed in {notice * 1000:.0f} ms"
                )
                print(
                    f"  + bodies and attachments parsed after {bodies:6.2f} s "
                    f"({args.messages / bodies:.0f} msg/s, ratio {mbsync / bodies:4.2f})"
                )
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS of the benchmark process: {peak:.0f} MB (parse workers excluded)")
    finally:
        if executor is not None:
            executor.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
