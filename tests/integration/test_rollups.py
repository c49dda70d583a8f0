"""The wall's roll-ups of closed days (core.rollups) against the direct computation (core.stats)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import delete, func, select

from core.calls import call_row, record_calls
from core.db import SessionFactory
from core.models import Call, WallDay, WallDayVersion
from core.rollups import SETTLED, split, wall_figures
from core.stats import Period, agent_figures, queue_figures
from crmcomms.telephony.calls import CallSnapshot

_NOW = datetime.now(UTC)
_START = datetime.combine((_NOW - timedelta(days=12)).date(), datetime.min.time(), tzinfo=UTC)
_DAY2 = timedelta(days=2)
_STATUSES = ("answered", "answered", "answered", "missed", "abandoned", "busy")


def _call(i: int, rng: random.Random) -> CallSnapshot:
    """Call ``i``: inbound through a queue or straight to a DID, outbound or internal; some
    answered with an unknown answer time (the link was down)."""
    started = _START + timedelta(seconds=rng.randrange(int((_NOW - _START).total_seconds())))
    status = rng.choice(_STATUSES)
    rung = tuple(rng.sample(["101", "102", "103"], rng.randint(1, 2)))
    answered = rung[0] if status == "answered" else None
    wait = rng.randint(1, 60)
    talk = rng.randint(5, 300) if answered else 0
    direction = rng.choice(("inbound", "inbound", "inbound", "outbound", "internal"))
    return CallSnapshot(
        linkedid=f"17000.{i}",
        direction=direction,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        caller="+4930123456" if direction == "inbound" else "101",
        caller_name="",
        callee="4930999",
        did=rng.choice(("4930999", "4930888")),
        queue=rng.choice(("support", "sales", "")),
        agents_rung=rung,
        answered_by=answered,
        started_at=started,
        answered_at=started + timedelta(seconds=wait) if answered and i % 7 else None,
        ended_at=started + timedelta(seconds=wait + talk),
        ring_seconds=wait,
        talk_seconds=talk if answered else None,
        hangup_cause="Normal Clearing",
        recording=None,
        transfers=(),
        talked=(answered,) if answered else (),
        times_uncertain=bool(answered) and not i % 7,
    )


async def _log(db: SessionFactory, calls: list[tuple[int, CallSnapshot]]) -> None:
    async with db.begin() as session:
        batch = [call_row(i, call, [], "DE") for i, call in calls]
        await session.run_sync(lambda s: record_calls(s.connection(), batch))


async def _direct(db: SessionFactory, period: Period) -> tuple[object, object]:
    async with db() as session:
        return await queue_figures(session, period), await agent_figures(session, period)


async def _rolled(db: SessionFactory, period: Period) -> tuple[object, object]:
    async with db() as session:
        return await wall_figures(session, period, _NOW)


async def _kept_days(db: SessionFactory) -> set[str]:
    async with db() as session:
        return set((await session.scalars(select(WallDay.day))).all())


async def test_the_roll_up_equals_the_direct_figures(db: SessionFactory) -> None:
    rng = random.Random(3)
    calls = [(i, _call(i, rng)) for i in range(1, 401)]
    await _log(db, calls)
    local = timezone(timedelta(hours=2))
    periods = [
        Period(_START, _NOW + timedelta(days=1)),  # closed days, then today (never kept)
        Period(_START.astimezone(local) + timedelta(hours=5), _NOW - timedelta(days=2), 30),
        Period(_START + timedelta(days=3), _START + timedelta(days=4), 10),
    ]
    for period in periods:
        expected = await _direct(db, period)
        assert await _rolled(db, period) == expected  # computes and keeps the closed days
        assert await _rolled(db, period) == expected  # adds the kept days up
    kept = await _kept_days(db)
    assert kept and max(kept) < (_NOW - SETTLED).date().isoformat()

    # calls of kept days change: a CDR backfill, a call logged late, retention deletes one
    uncertain = [(i, c) for i, c in calls if c.times_uncertain and c.started_at < _NOW - _DAY2]
    index, old = uncertain[0]
    await _log(
        db,
        [
            (
                index,
                replace(
                    old,
                    status="abandoned",
                    answered_by=None,
                    talked=(),
                    answered_at=None,
                    times_uncertain=False,
                    backfilled=True,
                ),
            )
        ],
    )
    await _log(db, [(1000, replace(old, linkedid="late.1", queue="late"))])
    async with db.begin() as session:
        await session.execute(delete(Call).where(Call.id == uncertain[1][0]))
    for period in periods:
        assert await _rolled(db, period) == await _direct(db, period)


async def test_recent_calls_bump_no_version(db: SessionFactory) -> None:
    recent = replace(_call(1, random.Random(5)), started_at=_NOW - timedelta(minutes=5))
    await _log(db, [(1, recent)])
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(WallDayVersion)) == 0


def test_split_keeps_closed_whole_days_only() -> None:
    now = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)
    since = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    days, rest = split(Period(since, now + timedelta(hours=22)), now)
    assert [d.isoformat() for d in (days[0], days[-1])] == ["2026-12-02", "2026-12-08"]
    assert [(p.since.hour, p.until.day) for p in rest] == [(23, 2), (0, 11)]
    assert rest[1].since == datetime(2026, 12, 9, tzinfo=UTC)  # 2 h after midnight: not closed
    assert split(Period(since, since + timedelta(hours=2)), now) == (
        [],
        [Period(since, since + timedelta(hours=2))],
    )
