"""DbWorker: a whole function in one transaction, on its own thread for SQLite."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, insert, select, text

from core.db import SessionFactory
from core.dbthread import DbWorker
from core.models import Organization


def _add(name: str, fail: bool = False) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        conn.execute(insert(Organization).values(name=name))
        if fail:
            raise RuntimeError("boom")
        return threading.current_thread().name

    return work


async def test_commits_or_rolls_back(db: SessionFactory) -> None:
    engine = db.kw["bind"]
    worker = DbWorker(engine)
    try:
        thread = await worker.run(_add("kept"))
        with pytest.raises(RuntimeError, match="boom"):
            await worker.run(_add("rolled back", fail=True))
        async with db() as session:
            names = list(await session.scalars(select(Organization.name)))
        assert names == ["kept"]
        if engine.dialect.name == "sqlite":
            assert thread.startswith("db-worker")  # one hop to its own thread
            auto = await worker.run(lambda c: c.execute(text("PRAGMA wal_autocheckpoint")).scalar())
            assert auto == 0  # checkpoints run on the checkpoint thread, never in a commit
        else:
            assert thread == threading.current_thread().name  # run_sync on the loop
    finally:
        await worker.close()
