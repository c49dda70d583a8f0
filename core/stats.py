"""The wall's figures over a period, computed in SQL (no row limit).

Per queue (inbound calls that went through a queue, ended, started in the
period; inbound calls that reached no queue count under their DID) and per
agent (``call_agents``, the one definition of who took part in a call, joined
to the agents' names):

- ``offered``: ended inbound queue calls; ``answered``, ``abandoned`` (the
  caller hung up waiting), ``missed`` (the queue gave up, or no one answered);
- ``answered_within``: answered at most ``threshold`` seconds after the call
  started (the caller's wait, from the PBX's times); ``service_level`` =
  answered_within / offered; calls whose answer time is unknown (the link was
  down) count in ``wait_unknown`` and never as answered within;
- ``abandon_rate`` = abandoned / offered;
- ``average_handling`` = mean talk seconds of answered calls (talk time only:
  after-call work is not measured);
- ``longest_wait``: the longest time to answer (or to give up) in the period.

Agents: ``answered`` calls (they answered first), ``missed`` (inbound calls that
rang them and were missed or abandoned), ``placed`` (outbound/internal calls
they made), ``talk_seconds`` of the calls they answered and ``average_handling``.
Everything is one grouped query per table, both using the ``started_at`` index
of ``calls``, over additive parts (sums, counts, maxima) from which the figures
are derived, so that per-day parts add up to a long period's
(:mod:`core.rollups` keeps them for closed days).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.calls import AgentRole
from core.models import Agent, AgentExtension, Call, CallAgent

ENDED = ("answered", "missed", "busy", "failed", "abandoned", "unknown")


@dataclass(frozen=True, slots=True)
class Period:
    """Calls started in [since, until); ``threshold`` the service level's seconds."""

    since: datetime
    until: datetime
    threshold: int = 20


def _seconds_between(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    """``end - start`` in seconds, in the database's own date arithmetic."""
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def day_of(started: Any, dialect: str) -> ColumnElement[str]:
    """The UTC day (``YYYY-MM-DD``) a call started on, as the roll-up triggers compute it."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", started), "YYYY-MM-DD")
    return func.date(started)


def queue_parts(period: Period, dialect: str, by_day: bool = False) -> Select[Any]:
    """Additive figures per line (queue, or DID; and per day when ``by_day``): sums and
    maxima that add up over days to those of the whole period (:data:`QUEUE_SUMS`)."""
    wait = _seconds_between(Call.started_at, Call.answered_at, dialect)
    waited = _seconds_between(Call.started_at, Call.ended_at, dialect)
    answered = Call.status == "answered"
    line = case((Call.queue != "", Call.queue), else_=Call.did).label("line")
    day = day_of(Call.started_at, dialect).label("day")
    query = (
        select(
            line,
            func.max(Call.queue).label("queue"),
            func.count().label("offered"),
            _count(answered).label("answered"),
            _count(Call.status == "abandoned").label("abandoned"),
            _count(Call.status.in_(("missed", "busy", "failed"))).label("missed"),
            _count(and_(answered, wait <= period.threshold)).label("answered_within"),
            _count(and_(answered, Call.answered_at.is_(None))).label("wait_unknown"),
            func.count(case((answered, Call.talk_seconds))).label("talk_count"),
            func.coalesce(func.sum(case((answered, Call.talk_seconds))), 0).label("talk_seconds"),
            func.count(case((answered, wait))).label("wait_count"),
            func.sum(case((answered, wait))).label("wait_sum"),
            func.max(case((answered, wait), else_=waited)).label("longest_wait"),
        )
        .where(
            Call.started_at >= period.since,
            Call.started_at < period.until,
            Call.direction == "inbound",
            Call.status.in_(ENDED),
        )
        .group_by(line)
    )
    return query.add_columns(day).group_by(day) if by_day else query


#: The queue figures that add up over days; ``longest_wait`` is their maximum.
QUEUE_SUMS = (
    "offered",
    "answered",
    "abandoned",
    "missed",
    "answered_within",
    "wait_unknown",
    "talk_count",
    "talk_seconds",
    "wait_count",
    "wait_sum",
)
#: The agent figures that add up over days.
AGENT_SUMS = ("answered", "missed", "placed", "talk_count", "talk_seconds")


async def queue_figures(session: AsyncSession, period: Period) -> list[dict[str, Any]]:
    """One row per queue, and per DID for inbound calls that reached no queue (``line``;
    ``queue`` says which): offered, answered, within threshold, abandoned, AHT...
    Computed from the calls directly (:mod:`core.rollups` adds days up instead)."""
    query = queue_parts(period, session.get_bind().dialect.name)
    rows = [dict(row._mapping) for row in await session.execute(query)]
    return [queue_row(row) for row in sorted(rows, key=lambda row: row["line"])]


def queue_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of one line from its additive parts (:func:`queue_parts`)."""
    offered = row["offered"]
    return {
        "line": row["line"],
        "queue": bool(row["queue"]),
        "offered": offered,
        "answered": row["answered"],
        "answered_within": row["answered_within"],
        "abandoned": row["abandoned"],
        "missed": row["missed"],
        "wait_unknown": row["wait_unknown"],
        "service_level": _ratio(row["answered_within"], offered),
        "abandon_rate": _ratio(row["abandoned"], offered),
        "average_handling": _mean(row["talk_seconds"], row["talk_count"]),
        "average_wait": _mean(row["wait_sum"], row["wait_count"]),
        "longest_wait": _round(row["longest_wait"]),
        "talk_seconds": int(row["talk_seconds"] or 0),
    }


def _has(role: AgentRole) -> ColumnElement[bool]:
    return CallAgent.roles.op("&", return_type=Integer)(int(role)) != 0


def agent_parts(period: Period, dialect: str, by_day: bool = False) -> Select[Any]:
    """Additive figures per agent extension (and per day when ``by_day``, :data:`AGENT_SUMS`)."""
    answered = and_(_has(AgentRole.ANSWERED), Call.status == "answered")
    missed = and_(
        _has(AgentRole.RUNG),
        ~_has(AgentRole.ANSWERED),
        Call.direction == "inbound",
        Call.status.in_(("missed", "abandoned")),
    )
    day = day_of(Call.started_at, dialect).label("day")
    query = (
        select(
            CallAgent.extension,
            _count(answered).label("answered"),
            _count(missed).label("missed"),
            _count(_has(AgentRole.PLACED)).label("placed"),
            func.count(case((answered, Call.talk_seconds))).label("talk_count"),
            func.coalesce(func.sum(case((answered, Call.talk_seconds))), 0).label("talk_seconds"),
        )
        .select_from(Call)
        .join(CallAgent, CallAgent.call_id == Call.id)
        .where(
            Call.started_at >= period.since,
            Call.started_at < period.until,
            Call.status.in_(ENDED),
        )
        .group_by(CallAgent.extension)
    )
    return query.add_columns(day).group_by(day) if by_day else query


async def agent_figures(session: AsyncSession, period: Period) -> list[dict[str, Any]]:
    """One row per agent extension that took part in a call of the period, with its name.
    Computed from the calls directly (:mod:`core.rollups` adds days up instead)."""
    query = agent_parts(period, session.get_bind().dialect.name)
    rows = [dict(row._mapping) for row in await session.execute(query)]
    return agent_rows(rows, await agent_names(session))


def agent_rows(parts: Iterable[Mapping[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """The figures of each agent extension from its additive parts, named, by extension."""
    return [
        {
            "extension": row["extension"],
            "name": names.get(row["extension"]),
            "answered": row["answered"],
            "missed": row["missed"],
            "placed": row["placed"],
            "talk_seconds": int(row["talk_seconds"] or 0),
            "average_handling": _mean(row["talk_seconds"], row["talk_count"]),
        }
        for row in sorted(parts, key=lambda row: row["extension"])
    ]


async def agent_names(session: AsyncSession) -> dict[str, str]:
    """Every agent extension and its agent's name."""
    rows = await session.execute(
        select(AgentExtension.extension, Agent.name).join(
            Agent, Agent.id == AgentExtension.agent_id
        )
    )
    return {extension: name for extension, name in rows}


def totals(queues: list[dict[str, Any]]) -> dict[str, Any]:
    """All queues together (the averages weighted by the calls)."""
    offered = sum(q["offered"] for q in queues)
    answered = sum(q["answered"] for q in queues)
    within = sum(q["answered_within"] for q in queues)
    abandoned = sum(q["abandoned"] for q in queues)
    talk = sum(q["talk_seconds"] for q in queues)
    longest = [q["longest_wait"] for q in queues if q["longest_wait"] is not None]
    return {
        "offered": offered,
        "answered": answered,
        "answered_within": within,
        "abandoned": abandoned,
        "missed": sum(q["missed"] for q in queues),
        "service_level": _ratio(within, offered),
        "abandon_rate": _ratio(abandoned, offered),
        "average_handling": _round(talk / answered) if answered else None,
        "longest_wait": max(longest, default=None),
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(total: Any, count: int) -> float | None:
    return _round(float(total) / count) if count else None


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
