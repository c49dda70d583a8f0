"""The wall's figures over long periods: closed days added up from kept per-day figures.

A period is cut into whole UTC days that are closed (ended at least
:data:`SETTLED` ago) and what is left at either end (part of a day, today).
The rest is computed from the calls (:mod:`core.stats`); a closed day's
additive figures per queue and per agent are computed once, kept in
``wall_queue_days`` / ``wall_agent_days`` and added up, so a quarter costs
about as much as a day.

A kept day is used only while the version it was computed at is the day's
current one: database triggers (migration 0008) bump ``wall_day_versions`` for
the day of every call or call-agent row written, changed or deleted later (a
CDR backfill, a reconciliation, retention). The version is read before the
day's calls are, so a call written meanwhile makes the kept figures stale, never
wrong. Today is never kept. Calls of the last two hours bump no version (the
triggers skip them; :data:`SETTLED` is longer by an hour of clock skew).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import WallAgentDay, WallDay, WallDayVersion, WallQueueDay
from core.stats import (
    AGENT_SUMS,
    QUEUE_SUMS,
    Period,
    agent_names,
    agent_parts,
    agent_rows,
    queue_parts,
    queue_row,
)

#: How long after its end a day is closed (the triggers' two hours and an hour's skew).
SETTLED = timedelta(hours=3)

Parts = list[dict[str, Any]]


async def wall_figures(
    session: AsyncSession, period: Period, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The period's queue and agent figures, as :func:`core.stats.queue_figures` and
    :func:`core.stats.agent_figures` give them, closed days from the kept figures."""
    days, rest = split(period, now)
    queues, agents = await _closed_days(session, days, period.threshold) if days else ([], [])
    dialect = session.get_bind().dialect.name
    for part in rest:
        queues += [_floats(r._mapping) for r in await session.execute(queue_parts(part, dialect))]
        agents += [dict(r._mapping) for r in await session.execute(agent_parts(part, dialect))]
    lines = sorted(_add_up(queues, "line", QUEUE_SUMS), key=lambda row: row["line"])
    queue_rows = [queue_row(row) for row in lines]
    return queue_rows, agent_rows(
        _add_up(agents, "extension", AGENT_SUMS), await agent_names(session)
    )


def split(period: Period, now: datetime) -> tuple[list[date], list[Period]]:
    """The closed whole UTC days of ``period`` and the periods left at its ends."""
    since, until = period.since.astimezone(UTC), period.until.astimezone(UTC)
    first = _midnight(since) + (timedelta(days=1) if since != _midnight(since) else timedelta())
    end = _midnight(min(until, now.astimezone(UTC) - SETTLED))
    if end <= first:
        return [], [period]
    days = [first.date() + timedelta(days=i) for i in range((end - first).days)]
    rest = [replace(period, since=since, until=first)] if since < first else []
    return days, rest + ([replace(period, since=end, until=until)] if end < until else [])


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), time(), tzinfo=UTC)


async def _closed_days(
    session: AsyncSession, days: Sequence[date], threshold: int
) -> tuple[Parts, Parts]:
    """The kept figures of ``days``, computing (and keeping) those missing or stale."""
    first, last = days[0].isoformat(), days[-1].isoformat()
    versions = await _versions(
        session,
        select(WallDayVersion.day, WallDayVersion.version).where(
            WallDayVersion.day.between(first, last)
        ),
    )
    kept = await _versions(
        session,
        select(WallDay.day, WallDay.version).where(
            WallDay.threshold == threshold, WallDay.day.between(first, last)
        ),
    )
    stale = [
        d.isoformat() for d in days if kept.get(d.isoformat(), -1) != versions.get(d.isoformat(), 0)
    ]
    fresh = await _kept(session, first, last, threshold, set(stale))
    if not stale:
        return fresh
    queues, agents = await _compute(session, stale, threshold)
    await _keep(session, stale, threshold, versions, queues, agents)
    return fresh[0] + queues, fresh[1] + agents


async def _versions(session: AsyncSession, query: Select[str, int]) -> dict[str, int]:
    return {day: version for day, version in await session.execute(query)}


async def _kept(
    session: AsyncSession, first: str, last: str, threshold: int, stale: set[str]
) -> tuple[Parts, Parts]:
    """The kept figures of the days from ``first`` to ``last`` but the ``stale`` ones,
    added up per line and per agent extension."""
    days = (first, last, threshold, stale)
    queues = await session.execute(_kept_sums(WallQueueDay, "line", QUEUE_SUMS, *days))
    agents = await session.execute(_kept_sums(WallAgentDay, "extension", AGENT_SUMS, *days))
    return [dict(row._mapping) for row in queues], [dict(row._mapping) for row in agents]


def _kept_sums(
    model: type[WallQueueDay | WallAgentDay],
    key: str,
    sums: Sequence[str],
    first: str,
    last: str,
    threshold: int,
    stale: set[str],
) -> Select[Any]:
    table = model.__table__
    maxima = [c for c in table.columns if c.key not in (*sums, key, "day", "threshold")]
    return (
        select(
            table.c[key],
            *(func.sum(table.c[name]).label(name) for name in sums),
            *(func.max(column).label(column.key) for column in maxima),
        )
        .where(
            table.c.threshold == threshold,
            table.c.day.between(first, last),
            table.c.day.not_in(stale),
        )
        .group_by(table.c[key])
    )


async def _compute(session: AsyncSession, days: list[str], threshold: int) -> tuple[Parts, Parts]:
    """The per-day figures of ``days`` from the calls (one grouped query per table)."""
    since = datetime.combine(date.fromisoformat(days[0]), time(), tzinfo=UTC)
    until = datetime.combine(date.fromisoformat(days[-1]), time(), tzinfo=UTC) + timedelta(days=1)
    period, dialect, wanted = (
        Period(since, until, threshold),
        session.get_bind().dialect.name,
        set(days),
    )
    queues = await session.execute(queue_parts(period, dialect, by_day=True))
    agents = await session.execute(agent_parts(period, dialect, by_day=True))
    return (
        [_floats(row._mapping) for row in queues if row.day in wanted],
        [dict(row._mapping) for row in agents if row.day in wanted],
    )


async def _keep(
    session: AsyncSession,
    days: list[str],
    threshold: int,
    versions: Mapping[str, int],
    queues: Parts,
    agents: Parts,
) -> None:
    """Keep the figures of ``days``, as of ``versions``; a concurrent keeper's win is fine."""
    try:
        for model in (WallDay, WallQueueDay, WallAgentDay):
            await session.execute(
                delete(model).where(model.threshold == threshold, model.day.in_(days))
            )
        session.add_all(
            WallDay(day=d, threshold=threshold, version=versions.get(d, 0)) for d in days
        )
        session.add_all(WallQueueDay(threshold=threshold, **row) for row in queues)
        session.add_all(WallAgentDay(threshold=threshold, **row) for row in agents)
        await session.commit()
    except DBAPIError:  # another request kept the same days first, or SQLite was busy
        await session.rollback()


def _floats(row: Mapping[str, Any]) -> dict[str, Any]:
    """A queue row, PostgreSQL's numeric seconds as floats (kept rows are floats)."""
    return {
        **row,
        "wait_sum": None if row["wait_sum"] is None else float(row["wait_sum"]),
        "longest_wait": None if row["longest_wait"] is None else float(row["longest_wait"]),
    }


def _add_up(rows: Iterable[Mapping[str, Any]], key: str, sums: Sequence[str]) -> Parts:
    """Rows with the same ``key`` added up: ``sums`` summed, the other figures' maximum."""
    total: dict[str, dict[str, Any]] = {}
    for row in rows:
        into = total.get(row[key])
        if into is None:
            total[row[key]] = {k: v for k, v in row.items() if k not in ("day", "threshold")}
            continue
        for name, value in row.items():
            if name in sums:
                into[name] = _plus(into[name], value)
            elif name not in (key, "day", "threshold"):
                into[name] = _max(into[name], value)
    return list(total.values())


def _plus(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)
