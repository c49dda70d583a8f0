"""What hostile input to ``POST /api/emails`` costs the daemon: answer time and event-loop stall.

Run: ``python bench/mail_input.py [--rounds N]``. Starts the real application
on loopback as the daemon runs (uvloop, heap frozen after start-up, the mail
parser processes up; SQLite in a temp dir, one mailbox, no workers), logs in
and sends:

- the pathological address of issue 10 (``'"' * n + 'a@x.example'``, 48 and
  96 KB): it took 6 s and 28 s of compose on the event loop; now refused (422)
  by its length before anything parses it;
- the largest input still accepted: 100 recipients of 254 characters and a
  998-character subject of encoded words, the stdlib's slowest header to fold.

For each, and for ``GET /api/me`` as the baseline of an authenticated
request, it prints the answer time (median, max) and the event loop's longest
stall meanwhile (a 1 ms ticker's worst lateness): the pops and ``/healthz``
wait that long.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from core.agents import add_agent
from core.db import create_engine
from core.migrate import upgrade
from crmcomms.app import build_app
from crmcomms.config import parse_settings
from crmcomms.keys import MAIL_PARSERS
from crmcomms.runtime import serve, settle_heap
from crmcomms.services import SERVICES

MAILBOX = {"name": "support", "address": "support@company.test", "imap_tls": "none"}


def pathological(n: int) -> dict[str, Any]:
    return {"to": ['"' * n + "a@x.example"], "text": "x"}


def largest_accepted() -> dict[str, Any]:
    local = "a" * 64
    domain = ".".join(["b" * 60] * 3) + ".ex"  # 186 characters
    to = [f"{local[: 64 - len(str(i))]}{i}@{domain}"[:254] for i in range(100)]
    return {"to": to, "subject": ("ü " * 499)[:998], "text": "x"}


async def stall_during(action: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    """(answer seconds, longest loop stall seconds, status) of one ``action``."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - before - 0.001)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    status = await action()
    took = time.perf_counter() - started
    done.set()
    await tick
    return took, worst, status


async def measure(client: TestClient[Any, Any], token: str, rounds: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    cases = {
        "pathological 48 KB": pathological(48000),
        "pathological 96 KB": pathological(96000),
        "largest accepted": largest_accepted(),
    }

    async def me() -> int:
        resp = await client.get("/api/me", headers=headers)
        await resp.read()
        return resp.status

    report("GET /api/me (baseline)", [await stall_during(me) for _ in range(rounds)])
    for name, body in cases.items():

        async def post(body: dict[str, Any] = body) -> int:
            resp = await client.post("/api/emails", json=body, headers=headers)
            await resp.read()
            return resp.status

        report(name, [await stall_during(post) for _ in range(rounds)])


def report(name: str, runs: list[tuple[float, float, int]]) -> None:
    """One line: status, answer time median and max, the loop's longest stall."""
    took = [r[0] * 1000 for r in runs]
    stall = max(r[1] for r in runs) * 1000
    print(
        f"{name:>22}: HTTP {runs[0][2]}, answered in {statistics.median(took):6.1f} ms "
        f"median, {max(took):6.1f} ms max; loop stall max {stall:5.1f} ms"
    )


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = {"general": {"data_dir": str(Path(tmp) / "data")}, "mailboxes": [MAILBOX]}
        settings = parse_settings(raw, env={})
        engine = create_engine(settings.database_url)
        await upgrade(engine)
        await engine.dispose()
        app = build_app(settings, own_workers=False)
        pool = ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context("forkserver"))
        app[MAIL_PARSERS] = pool  # as the daemon has with a mailbox configured
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            async with app[SERVICES].sessions.begin() as session:
                await add_agent(session, "bench", "bench-password", ("100",))
            login = {"username": "bench", "password": "bench-password"}
            token = (await (await client.post("/api/login", json=login)).json())["token"]
            loop = asyncio.get_running_loop()  # the daemon's pool is up long before a POST
            await asyncio.gather(*(loop.run_in_executor(pool, abs, 1) for _ in range(4)))
            settle_heap()
            await measure(client, token, rounds)
        pool.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    serve(main(parser.parse_args().rounds))
