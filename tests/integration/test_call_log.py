"""The call log store: batched upserts by Linkedid on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.calls import record_calls
from core.db import create_engine, session_factory
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
    ended = _ended_calls()
    ringing = [replace(c, status="ringing", ended_at=None) for c in ended]
    try:
        async with sessions.begin() as session:
            ids = await record_calls(session, [(c, []) for c in ringing], "DE")
        async with sessions.begin() as session:
            again = await record_calls(session, [(c, []) for c in ended], "DE")
        async with sessions.begin() as session:  # replayed stream: final calls stay as they are
            await record_calls(session, [(c, []) for c in ringing], "DE")
        assert again == ids and len(ids) == len(ended) == 7
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Call)) == 7
            statuses = sorted(await session.scalars(select(Call.status)))
        assert statuses == sorted(c.status for c in ended)
    finally:
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
                await record_calls(session, [(call, [1, 2, 1])], "DE")
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
