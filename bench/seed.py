"""The call log the call and wall benchmarks share: N calls over 90 days, 20 agents.

``build`` logs them through ``core.calls.record_calls`` (the writer's path, which
fills ``call_agents`` and fires the wall's roll-up triggers) for 20 agents
(extensions 101-120): 70 % inbound queue calls ringing 2 to 4 agents, 85 % of them
answered, 20 % outbound, 10 % internal. ``timed`` times a probe, each run in its own
session as the HTTP API does.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.calls import CallRow, call_row, record_calls
from core.db import session_factory
from core.migrate import upgrade
from core.models import Call
from crmcomms.telephony.calls import CallSnapshot

AGENTS = [str(ext) for ext in range(101, 121)]
BATCH = 2_000
START = datetime(2026, 9, 1, tzinfo=UTC)


def snapshot(i: int, rng: random.Random, span: timedelta) -> CallSnapshot:
    """Call number ``i``: started at a random time in ``span``, ended."""
    started = START + span * rng.random()
    kind = rng.random()
    caller, callee, direction = f"+49301{rng.randint(0, 99999):05d}", "4930999", "inbound"
    rung: tuple[str, ...] = tuple(rng.sample(AGENTS, rng.randint(2, 4)))
    answered: str | None = rng.choice(rung) if rng.random() < 0.85 else None
    if kind >= 0.7:
        caller, rung, answered = rng.choice(AGENTS), (), None
        direction, callee = "outbound", f"0171{rng.randint(0, 9999999):07d}"
        if kind >= 0.9:
            callee = rng.choice([a for a in AGENTS if a != caller])
            direction, rung, answered = "internal", (callee,), callee
    ring = rng.randint(1, 30)
    talk = rng.randint(10, 600) if answered or direction == "outbound" else 0
    return CallSnapshot(
        linkedid=f"{int(started.timestamp())}.{i}",
        direction=direction,  # type: ignore[arg-type]
        status="answered" if talk else "missed",
        caller=caller,
        caller_name="",
        callee=callee,
        did=callee if direction == "inbound" else "",
        queue="support" if direction == "inbound" else "",
        agents_rung=rung,
        answered_by=answered,
        started_at=started,
        answered_at=started + timedelta(seconds=ring) if talk else None,
        ended_at=started + timedelta(seconds=ring + talk),
        ring_seconds=ring,
        talk_seconds=talk,
        hangup_cause="Normal Clearing",
        recording=None,
        transfers=(),
        talked=(answered,) if answered else (),
    )


def batches(n: int, rng: random.Random) -> Iterator[list[CallRow]]:
    span = timedelta(days=90)
    for first in range(1, n + 1, BATCH):
        last = min(first + BATCH, n + 1)
        yield [call_row(i, snapshot(i, rng, span), [], "DE") for i in range(first, last)]


async def build(engine: AsyncEngine, n: int, rng: random.Random) -> float:
    """Log ``n`` calls through the writer; the seconds it took."""
    await upgrade(engine)
    started = time.perf_counter()
    async with engine.begin() as conn:
        if await conn.scalar(select(func.count()).select_from(Call)):
            sys.exit("the database is not empty")
        for batch in batches(n, rng):
            await conn.run_sync(functools.partial(record_calls, rows=batch))
    async with engine.connect() as conn:  # statistics, as autovacuum / a DBA's ANALYZE would
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("ANALYZE"))
    return time.perf_counter() - started


Probe = Callable[[AsyncSession], Awaitable[Any]]


async def timed(engine: AsyncEngine, probe: Probe, runs: int) -> tuple[list[float], Any]:
    """Latencies of ``probe``, each in its own session (pool checkout included)."""
    sessions = session_factory(engine)
    latencies, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        async with sessions() as session:
            result = await probe(session)
        latencies.append(time.perf_counter() - started)
    return latencies, result


def database_options(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its first docstring line, ``--postgres``, ``--no-sqlite``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--postgres", help="an empty PostgreSQL database (asyncpg URL)")
    parser.add_argument("--no-sqlite", action="store_true")
    return parser


def on_databases(args: argparse.Namespace, run: Callable[[str], Awaitable[None]]) -> None:
    """``run`` on a temporary SQLite file (unless ``--no-sqlite``), then on ``--postgres``."""
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"))
    if args.postgres:
        asyncio.run(run(args.postgres))
