"""Call log benchmark: one agent's calls, newest first, at 200,000 calls.

    python bench/calls_list.py [--calls 200000] [--runs 500] [--postgres URL]

Logs N calls over 90 days (bench/seed.py: through the writer's path, 20 agents,
70 % inbound queue calls ringing 2 to 4 agents, 20 % outbound, 10 % internal).
Then times, each in its own session as the HTTP API does:

- ``agent, index range``: the SQL that finds them (``call_agents``' index), alone;
- ``agent``: ``list_calls`` of an agent (``GET /api/calls`` as that agent, 50 calls);
- ``agent missed``: the same with ``status=missed``;
- ``agent 2 ext``: an agent with two extensions;
- ``supervisor ?agent=``: a supervisor filtering on one extension;
- ``member``: ``call_has_agent`` (the check of ``GET /api/calls/{id}``).

With ``--postgres URL`` (an empty database) the same runs against PostgreSQL.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

from seed import Probe, build, database_options, on_databases, timed
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.calls import CallFilter, _agent_range, call_has_agent, list_calls
from core.db import create_engine


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
    parser = database_options(__doc__ or "")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    on_databases(args, lambda url: run(url, args.calls, args.runs))


if __name__ == "__main__":
    main()
