"""Migrations apply on SQLite and on a real PostgreSQL, and the schema matches the models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, Boolean, DateTime, Integer, String, insert, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import TableClause, column, table

from core.calls import AgentRole
from core.db import create_engine
from core.migrate import current_revision, head_revision, upgrade
from core.models import Base
from tests.conftest import PostgresServer


async def _assert_migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        await upgrade(engine)  # idempotent
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        diff = [d for d in diff if not _for_another_dialect(d, engine.dialect.name)]
        assert set(Base.metadata.tables) <= tables
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        await engine.dispose()


def _for_another_dialect(change: Any, dialect: str) -> bool:
    """An index the models create on another database only (``Index.ddl_if``), which
    alembic's comparison does not know of (the pg_trgm indexes on SQLite)."""
    if change[0] != "add_index":
        return False
    table = Base.metadata.tables[change[1].table.name]
    ddl_if = next(ix._ddl_if for ix in table.indexes if ix.name == change[1].name)
    return ddl_if is not None and ddl_if.dialect not in (None, dialect)


async def test_sqlite(tmp_path: Path) -> None:
    await _assert_migrated(f"sqlite+aiosqlite:///{tmp_path}/m.sqlite3")


@pytest.mark.postgres
async def test_postgresql(postgres: PostgresServer) -> None:
    await _assert_migrated(postgres.create_database("migrations"))


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    from sqlalchemy import text

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/p.sqlite3")
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
    await engine.dispose()


_OLD_CALLS = [
    # id, direction, caller, callee, agents_rung, answered_by, transfers
    (1, "inbound", "+4930123", "4930999", ["101", "102"], "102", []),
    (2, "outbound", "101", "0301234567", [], None, []),
    (3, "internal", "101", "103", ["103"], "103", []),
    (
        4,
        "inbound",
        "0171555",
        "4930999",
        ["102"],
        "102",
        [{"from": "102", "to": "104", "kind": "blind"}],
    ),
    (5, "inbound", "0171555", "4930999", [], None, []),
]


def _table_0003(name: str, **types: Any) -> TableClause:
    return table(name, *(column(c, type_) for c, type_ in types.items()))


_CALLS_0003 = _table_0003(
    "calls",
    **{c: String() for c in ("linkedid", "direction", "status", "caller", "caller_name")},
    **{c: String() for c in ("callee", "did", "queue", "answered_by", "hangup_cause")},
    id=Integer(),
    agents_rung=JSON(),
    transfers=JSON(),
    started_at=DateTime(timezone=True),
    ring_seconds=Integer(),
    talk_seconds=Integer(),
)
_CONTACTS_0003 = _table_0003(
    "contacts",
    id=Integer(),
    first_name=String(),
    last_name=String(),
    display_name=String(),
    created_at=DateTime(timezone=True),
    updated_at=DateTime(timezone=True),
)
_LINKS_0003 = _table_0003("call_contacts", call_id=Integer(), contact_id=Integer())
_TASKS_0003 = _table_0003(
    "tasks",
    **{c: String() for c in ("kind", "title", "number", "queue")},
    contact_id=Integer(),
    call_id=Integer(),
    assignees=JSON(),
    done=Boolean(),
    created_at=DateTime(timezone=True),
)


async def _fill_0003(engine: AsyncEngine) -> None:
    """Calls as revision 0003 stored them, with contact links and a task."""
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    calls = [
        {
            "id": id_,
            "linkedid": f"17000000.{id_}",
            "direction": direction,
            "status": "answered" if answered else "missed",
            "caller": caller,
            "caller_name": "",
            "callee": callee,
            "did": "",
            "queue": "",
            "agents_rung": rung,
            "answered_by": answered,
            "started_at": at + timedelta(minutes=id_),
            "ring_seconds": 3,
            "talk_seconds": 40 if answered else 0,
            "hangup_cause": "Normal Clearing",
            "transfers": transfers,
        }
        for id_, direction, caller, callee, rung, answered, transfers in _OLD_CALLS
    ]
    contact = {"id": 1, "first_name": "", "last_name": "", "display_name": "C"}
    task = {"kind": "callback", "title": "Call back", "number": "0171555", "queue": ""}
    async with engine.begin() as conn:
        await conn.execute(insert(_CALLS_0003), calls)
        await conn.execute(insert(_CONTACTS_0003), {**contact, "created_at": at, "updated_at": at})
        await conn.execute(insert(_LINKS_0003), [{"call_id": c, "contact_id": 1} for c in (1, 5)])
        await conn.execute(
            insert(_TASKS_0003),
            {
                **task,
                "contact_id": 1,
                "call_id": 5,
                "assignees": [],
                "done": False,
                "created_at": at,
            },
        )


async def _assert_0004_backfilled(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine, "0003")
        await _fill_0003(engine)
        await upgrade(engine)
        async with engine.connect() as conn:
            agents = (
                await conn.execute(
                    text("SELECT call_id, extension, roles FROM call_agents ORDER BY 1, 2")
                )
            ).all()
            links = (await conn.execute(text("SELECT call_id FROM call_contacts"))).all()
            task_calls = (await conn.execute(text("SELECT call_id FROM tasks"))).all()
            calls = (
                await conn.execute(
                    text(
                        "SELECT ring_seconds, talk_seconds, times_uncertain, backfilled"
                        " FROM calls ORDER BY id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    rung, answered, placed, called = (
        AgentRole.RUNG,
        AgentRole.ANSWERED,
        AgentRole.PLACED,
        AgentRole.CALLED,
    )
    assert [tuple(a) for a in agents] == [
        (1, "101", rung),
        (1, "102", rung | answered),
        (2, "101", placed),
        (3, "101", placed),
        (3, "103", rung | answered | called),
        (4, "102", rung | answered | AgentRole.TRANSFERRED),
        (4, "104", AgentRole.TRANSFER_TARGET),
    ]
    assert sorted(link[0] for link in links) == [1, 5]  # the rebuilt calls table kept them
    assert [t[0] for t in task_calls] == [5]
    assert calls[0] == (3, 40, False, False)
    assert [c[1] for c in calls] == [40, 0, 40, 40, 0]


async def test_0004_fills_call_agents_on_sqlite(tmp_path: Path) -> None:
    await _assert_0004_backfilled(f"sqlite+aiosqlite:///{tmp_path}/old.sqlite3")


@pytest.mark.postgres
async def test_0004_fills_call_agents_on_postgresql(postgres: PostgresServer) -> None:
    await _assert_0004_backfilled(postgres.create_database("migrations_0004"))
