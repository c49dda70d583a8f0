"""Wall summary benchmark: GET /api/wall's SQL at 200,000 calls.

    python bench/wall.py [--calls 200000] [--runs 50] [--postgres URL]

Logs the calls of bench/calls_list.py (90 days, 20 agents, 70 % inbound queue calls)
through the writer, then times :func:`core.stats.queue_figures` plus
:func:`core.stats.agent_figures` (what the wall's endpoint runs) for one day and for
the whole 90 days (every call in the log, no row limit), each in its own session.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from calls_list import START, build, timed
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import create_engine
from core.stats import Period, agent_figures, queue_figures


async def summary(session: AsyncSession, period: Period) -> tuple[Any, Any]:
    return await queue_figures(session, period), await agent_figures(session, period)


async def run(url: str, n: int, runs: int) -> None:
    engine = create_engine(url)
    try:
        seconds = await build(engine, n, random.Random(7))
        print(f"{engine.dialect.name}: {n} calls logged in {seconds:.1f} s")
        day = START + timedelta(days=45)
        periods = {
            "one day": Period(day, day + timedelta(days=1)),
            "90 days (all)": Period(START, START + timedelta(days=91)),
        }
        for label, period in periods.items():
            probe = lambda s, p=period: summary(s, p)  # noqa: E731
            await timed(engine, probe, 3)  # warm-up
            latencies, (queues, agents) = await timed(engine, probe, runs)
            q = statistics.quantiles(latencies, n=20)
            offered = sum(row["offered"] for row in queues)
            print(
                f"  {label:<14} p50 {statistics.median(latencies) * 1e3:7.1f} ms"
                f"  p95 {q[18] * 1e3:7.1f} ms  ({offered} inbound calls, {len(agents)} agents)"
            )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--postgres", help="an empty PostgreSQL database (asyncpg URL)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(
            run(f"sqlite+aiosqlite:///{Path(tmp) / 'calls.sqlite3'}", args.calls, args.runs)
        )
    if args.postgres:
        asyncio.run(run(args.postgres, args.calls, args.runs))


if __name__ == "__main__":
    main()
