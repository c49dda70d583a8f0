"""Migrations apply on SQLite and on a real PostgreSQL, and the schema matches the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

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
        assert set(Base.metadata.tables) <= tables
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        await engine.dispose()


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
