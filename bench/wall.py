"""Wall summary benchmark: GET /api/wall's figures at 200,000 calls, a day to a quarter.

    python bench/wall.py [--calls 200000] [--runs 50] [--postgres URL]

Logs the calls of bench/seed.py (90 days, 20 agents, 70 % inbound queue calls)
through the writer, then, for one day, a week, a week of local days (+01:00: part
of a UTC day at either end), 30 days and all 90 days, times:

- ``direct``: :func:`core.stats.queue_figures` plus :func:`core.stats.agent_figures`
  (every call of the period read, grouped);
- ``first``: :func:`core.rollups.wall_figures` with nothing kept (computes each
  closed day's figures and keeps them);
- ``kept``: the same again (closed days added up from the kept figures: the wall's
  steady state), p50 / p95 over ``--runs``.

and checks that both give the same figures.
"""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from seed import START, build, database_options, on_databases, timed
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import create_engine
from core.models import WallAgentDay, WallDay, WallQueueDay
from core.rollups import wall_figures
from core.stats import Period, agent_figures, queue_figures

NOW = datetime(2026, 12, 31, tzinfo=UTC)  # every day of the log is closed
LOCAL = timezone(timedelta(hours=1))


async def direct(session: AsyncSession, period: Period) -> tuple[Any, Any]:
    return await queue_figures(session, period), await agent_figures(session, period)


async def forget(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for model in (WallDay, WallQueueDay, WallAgentDay):
            await conn.execute(delete(model))


def periods() -> dict[str, Period]:
    day = START + timedelta(days=45)
    local = datetime.combine(day.date(), datetime.min.time(), tzinfo=LOCAL)
    return {
        "one day": Period(day, day + timedelta(days=1)),
        "7 days": Period(day, day + timedelta(days=7)),
        "7 local days": Period(local, local + timedelta(days=7)),
        "30 days": Period(day - timedelta(days=15), day + timedelta(days=15)),
        "90 days (all)": Period(START, START + timedelta(days=91)),
    }


def ms(latencies: list[float]) -> str:
    if len(latencies) < 2:
        return f"{latencies[0] * 1e3:8.1f} ms"
    p95 = statistics.quantiles(latencies, n=20)[18]
    return f"{statistics.median(latencies) * 1e3:8.1f} / {p95 * 1e3:.1f} ms"


async def run(url: str, n: int, runs: int) -> None:
    engine = create_engine(url)
    try:
        seconds = await build(engine, n, random.Random(7))
        print(f"{engine.dialect.name}: {n} calls logged in {seconds:.1f} s")
        for label, period in periods().items():
            slow, expected = await timed(engine, lambda s, p=period: direct(s, p), 3)
            await forget(engine)
            rolled = lambda s, p=period: wall_figures(s, p, NOW)  # noqa: E731
            first, got = await timed(engine, rolled, 1)
            kept, again = await timed(engine, rolled, runs)
            assert got == expected == again, f"{label}: roll-up differs from the direct figures"
            offered = sum(row["offered"] for row in expected[0])
            print(
                f"  {label:<14} direct {ms(slow)}  first {ms(first)}  kept p50/p95 {ms(kept)}"
                f"  ({offered} inbound calls)"
            )
    finally:
        await engine.dispose()


def main() -> None:
    parser = database_options(__doc__ or "")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    on_databases(args, lambda url: run(url, args.calls, args.runs))


if __name__ == "__main__":
    main()
