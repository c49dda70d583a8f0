"""Call log benchmark: one agent's calls, newest first, at 200,000 calls.

    python bench/calls_list.py [--calls 200000] [--runs 500] [--postgres URL]

Logs N calls over 90 days through ``core.calls.record_calls`` (the writer's
path, which fills ``call_agents``) for 20 agents (extensions 101-120): 70 %
inbound queue calls ringing 2 to 4 agents, 20 % outbound, 10 % internal. Then
times, each in its own session as the HTTP API does:

- ``agent, index range``: the SQL that finds them (``call_agents``' index), alone;
- ``agent``: ``list_calls`` of an agent (``GET /api/calls`` as that agent, 50 calls);
- ``agent missed``: the same with ``status=missed``;
- ``agent 2 ext``: an agent with two extensions;
- ``supervisor ?agent=``: a supervisor filtering on one extension;
- ``member``: ``call_has_agent`` (the check of ``GET /api/calls/{id}``).

With ``--postgres URL`` (an empty database) the same runs against PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.calls import CallFilter, _agent_range, call_has_agent, list_calls, record_calls
from core.db import create_engine, session_factory
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


def batches(n: int, rng: random.Random) -> Iterator[list[tuple[int, CallSnapshot, list[int]]]]:
    span = timedelta(days=90)
    for first in range(1, n + 1, BATCH):
        yield [(i, snapshot(i, rng, span), []) for i in range(first, min(first + BATCH, n + 1))]


async def build(engine: AsyncEngine, n: int, rng: random.Random) -> float:
    """Log ``n`` calls through the writer; the seconds it took."""
    await upgrade(engine)
    started = time.perf_counter()
    async with engine.begin() as conn:
        if await conn.scalar(select(func.count()).select_from(Call)):
            sys.exit("the database is not empty")
        for batch in batches(n, rng):
            await conn.run_sync(functools.partial(record_calls, calls=batch, region="DE"))
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


async def index_range(session: AsyncSession) -> list[Any]:
    """The SQL part of an agent's list: the newest 50 (call id, start) of extension 105."""
    return list(await session.execute(_agent_range("105", CallFilter())))


async def plan(engine: AsyncEngine) -> None:
    """The query plan of one agent's list (SQLite)."""
    if engine.dialect.name != "sqlite":
        return
    from sqlalchemy.dialects import sqlite

    query = _agent_range("105", CallFilter(extensions=frozenset({"105"})))
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        print("  plan:", "; ".join(row[-1] for row in rows))


async def run(url: str, n: int, runs: int) -> None:
    engine = create_engine(url)
    try:
        seconds = await build(engine, n, random.Random(7))
        print(f"{engine.dialect.name}: {n} calls logged in {seconds:.1f} s")
        await plan(engine)
        one = frozenset({"105"})
        probes: dict[str, Probe] = {
            "agent, index range": index_range,
            "agent": lambda s: list_calls(s, CallFilter(extensions=one)),
            "agent missed": lambda s: list_calls(s, CallFilter(status="missed", extensions=one)),
            "agent 2 ext": lambda s: list_calls(
                s, CallFilter(extensions=frozenset({"105", "117"}))
            ),
            "supervisor ?agent=": lambda s: list_calls(s, CallFilter(agent="105")),
            "member": lambda s: call_has_agent(s, n // 2, one),
        }
        for label, probe in probes.items():
            await timed(engine, probe, 20)  # warm-up
            latencies, result = await timed(engine, probe, runs)
            q = statistics.quantiles(latencies, n=100)
            size = len(result) if isinstance(result, list) else result
            print(f"  {label:<20} p50 {q[49] * 1e3:6.2f} ms  p99 {q[98] * 1e3:6.2f} ms  ({size})")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--postgres", help="an empty PostgreSQL database (asyncpg URL)")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(
                run(f"sqlite+aiosqlite:///{Path(tmp) / 'calls.sqlite3'}", args.calls, args.runs)
            )
    if args.postgres:
        asyncio.run(run(args.postgres, args.calls, args.runs))


if __name__ == "__main__":
    main()
