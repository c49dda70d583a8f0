"""The call log store: batched upserts by Linkedid on SQLite and PostgreSQL, run in one
hop by the DbWorker (its own thread on SQLite, run_sync on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from core.calls import call_ids, record_calls, reserve_call_ids
from core.db import create_engine, session_factory
from core.dbthread import DbWorker
from core.migrate import upgrade
from core.models import Call, CallContact
from crmcomms.ami.framing import AmiFramer
from crmcomms.telephony.calls import CallEnded, CallSnapshot
from crmcomms.telephony.tracker import CallTracker
from tests.conftest import PostgresServer

CAPTURES = Path(__file__).parents[1] / "fixtures" / "ami"


def _ended_calls() -> list[CallSnapshot]:
    tracker = CallTracker()
    calls = []
    for capture in sorted(CAPTURES.glob("*.ami")):
        for block in AmiFramer().feed(capture.read_bytes()):
            calls += [e.call for e in tracker.feed_message(block) if isinstance(e, CallEnded)]
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
            record_calls(conn, [(ids[c.linkedid], c, []) for c in calls], "DE")
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
                    lambda s: record_calls(s.connection(), [(7, call, [1, 2, 1])], "DE")
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
