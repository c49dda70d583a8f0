"""The call log store: batched upserts by Linkedid on SQLite and PostgreSQL, run in one
hop by the DbWorker (its own thread on SQLite, run_sync on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from core.calls import (
    FACT_COLUMNS,
    AgentRole,
    CallRow,
    call_ids,
    call_row,
    record_calls,
    reserve_call_ids,
)
from core.db import SessionFactory, create_engine, session_factory
from core.dbthread import DbWorker
from core.migrate import upgrade
from core.models import Call, CallAgent, CallContact
from crmcomms.ami.framing import AmiFramer
from crmcomms.telephony.calls import CallEnded, CallSnapshot, Transfer
from crmcomms.telephony.tracker import CallTracker
from tests.ami_edge import feed
from tests.calls import T0, snapshot
from tests.conftest import PostgresServer

CAPTURES = Path(__file__).parents[1] / "fixtures" / "ami"


def _ended_calls() -> list[CallSnapshot]:
    tracker = CallTracker()
    calls = []
    for capture in sorted(CAPTURES.glob("*.ami")):
        for block in AmiFramer().feed(capture.read_bytes()):
            calls += [e.call for e in feed(tracker, [block]) if isinstance(e, CallEnded)]
    return calls


async def _check_batches(url: str) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    worker = DbWorker(engine)
    ended = _ended_calls()
    ringing = [replace(c, status="ringing", ended_at=None) for c in ended]

    def record(calls: list[CallSnapshot]) -> Callable[[Connection], dict[str, int]]:
        def work(conn: Connection) -> dict[str, int]:
            ids = call_ids(conn, [c.linkedid for c in calls])
            fresh = iter(reserve_call_ids(conn, len(calls) - len(ids)))
            ids = {c.linkedid: ids.get(c.linkedid) or next(fresh) for c in calls}
            record_calls(conn, [call_row(ids[c.linkedid], c, [], "DE") for c in calls])
            return ids

        return work

    try:
        ids = await worker.run(record(ringing))
        again = await worker.run(record(ended))
        await worker.run(record(ringing))  # replayed stream: final calls stay as they are
        assert again == ids and len(ids) == len(ended) == 7
        # fresh ids: above every logged call and above the last one handed out (SQLite),
        # from the sequence (PostgreSQL)
        fresh = await worker.run(lambda conn: reserve_call_ids(conn, 2, above=100))
        if engine.dialect.name == "sqlite":
            assert fresh == [101, 102]
        else:
            assert max(ids.values()) < fresh[0] < fresh[1]
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Call)) == 7
            statuses = sorted(await session.scalars(select(Call.status)))
        assert statuses == sorted(c.status for c in ended)
    finally:
        await worker.close()
        await engine.dispose()


async def test_batches_on_sqlite(tmp_path: Path) -> None:
    await _check_batches(f"sqlite+aiosqlite:///{tmp_path}/calls.sqlite3")


@pytest.mark.postgres
async def test_batches_on_postgresql(postgres: PostgresServer) -> None:
    await _check_batches(postgres.create_database("calllog"))


async def test_contact_links_are_added_once(tmp_path: Path, migrated_engine_url: str) -> None:
    engine = create_engine(migrated_engine_url)
    sessions = session_factory(engine)
    call = _ended_calls()[0]
    from core.models import Contact

    try:
        async with sessions.begin() as session:
            session.add_all([Contact(id=1, display_name="A"), Contact(id=2, display_name="B")])
        for _ in range(2):
            async with sessions.begin() as session:
                await session.run_sync(
                    lambda s: record_calls(s.connection(), [call_row(7, call, [1, 2, 1], "DE")])
                )
        async with sessions() as session:
            links = await session.scalar(select(func.count()).select_from(CallContact))
        assert links == 2
    finally:
        await engine.dispose()


@pytest.fixture
async def migrated_engine_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/links.sqlite3"
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    return url


_T0 = T0
_LIVE = snapshot(
    linkedid="1700000000.9",
    status="talking",
    queue="support",
    agents_rung=("101", "102"),
    answered_by="102",
    answered_at=_T0 + timedelta(seconds=8),
    ring_seconds=8,
    talk_seconds=3,
    talked=("102",),
)


async def _record(sessions: SessionFactory, *calls: CallSnapshot) -> Call:
    async with sessions.begin() as session:
        for call in calls:
            await session.run_sync(
                lambda s, c=call: record_calls(s.connection(), [call_row(1, c, [], "DE")])
            )
    async with sessions() as session:
        row = await session.get(Call, 1)
        assert row is not None
        return row


async def _agents(sessions: SessionFactory) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(select(CallAgent.extension, CallAgent.roles))
        return {extension: roles for extension, roles in rows}


async def test_backfill_corrects_an_uncertain_call(db: SessionFactory) -> None:
    # the link dropped while 102 talked: closed with unknown end, then the CDR says more
    closed = replace(_LIVE, status="answered", talk_seconds=None, times_uncertain=True)
    cdr = replace(
        closed,
        answered_at=None,  # a queue call's CDR answer is the dialplan's: not taken
        ended_at=_T0 + timedelta(seconds=20),
        talk_seconds=12,
        hangup_cause="Normal Clearing",
        times_uncertain=False,
        backfilled=True,
    )
    row = await _record(db, _LIVE, closed)
    assert (row.talk_seconds, row.times_uncertain, row.backfilled) == (None, True, False)
    row = await _record(db, replace(closed, status="missed"))  # live replay: no change
    assert row.status == "answered"
    row = await _record(db, cdr)
    assert row.answered_at == _LIVE.answered_at  # known: kept
    assert row.ended_at == cdr.ended_at and row.talk_seconds == 12
    assert (row.times_uncertain, row.backfilled, row.hangup_cause) == (
        False,
        True,
        "Normal Clearing",
    )
    row = await _record(db, replace(cdr, ended_at=_T0, hangup_cause="late"))  # certain now: final
    assert row.ended_at == cdr.ended_at and row.hangup_cause == "Normal Clearing"


async def test_backfill_never_touches_a_certain_call(db: SessionFactory) -> None:
    done = replace(_LIVE, status="answered", ended_at=_T0 + timedelta(seconds=20), talk_seconds=12)
    await _record(db, done)
    row = await _record(db, replace(done, status="missed", talk_seconds=None, backfilled=True))
    assert (row.status, row.talk_seconds, row.backfilled) == ("answered", 12, False)


async def test_unknown_status_and_durations(db: SessionFactory) -> None:
    unknown = replace(
        _LIVE,
        status="unknown",
        answered_by=None,
        answered_at=None,
        ring_seconds=None,
        talk_seconds=None,
        talked=(),
        times_uncertain=True,
    )
    ringing = replace(_LIVE, status="ringing", answered_by=None, answered_at=None, talked=())
    row = await _record(db, ringing, unknown)
    assert (row.status, row.ring_seconds, row.talk_seconds) == ("unknown", None, None)
    assert row.answered_at is None  # never known
    row = await _record(db, replace(unknown, status="missed", ring_seconds=20, backfilled=True))
    assert (row.status, row.ring_seconds, row.backfilled) == ("missed", 20, True)
    fresh = replace(unknown, linkedid="1700000000.10", ring_seconds=None)
    async with db.begin() as session:
        await session.run_sync(
            lambda s: record_calls(s.connection(), [call_row(2, fresh, [], "DE")])
        )
    async with db() as session:
        assert (await session.get(Call, 2)).ring_seconds is None  # type: ignore[union-attr]


async def test_call_agents_follow_the_snapshots(db: SessionFactory) -> None:
    ringing = replace(_LIVE, status="ringing", answered_by=None, agents_rung=("101",), talked=())
    await _record(db, ringing, ringing)
    assert await _agents(db) == {"101": AgentRole.RUNG}
    ended = replace(
        _LIVE,
        status="answered",
        agents_rung=("102",),  # e.g. the CDR's view: who rang is never taken away
        started_at=_T0 - timedelta(seconds=2),  # adopted with its real start
        transfers=(Transfer("102", "104", "blind"),),
    )
    await _record(db, ended, ringing)  # an older snapshot replayed changes nothing
    R = AgentRole
    assert await _agents(db) == {
        "101": R.RUNG,
        "102": R.RUNG | R.ANSWERED | R.TALKED | R.TRANSFERRED,
        "104": R.TRANSFER_TARGET,
    }
    async with db() as session:
        starts = set(await session.scalars(select(CallAgent.started_at)))
    assert starts == {ended.started_at}  # the call's, for every agent of it


def test_the_upsert_writes_the_facts_only() -> None:
    """Every fact is written, and only facts: other columns (an agent's wrap-up) survive."""
    assert set(call_row(1, _LIVE, [], "DE").values()) == {"id", "linkedid", *FACT_COLUMNS}
    assert set(CallRow.__slots__) == {"id", "linkedid", *FACT_COLUMNS, "agents", "contacts"}
