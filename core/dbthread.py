"""Batches of synchronous database work, each in one hop from the event loop.

Hot paths (the call log of the telephony worker) do several statements per
batch. Through the async engine on SQLite each statement is a round trip to
aiosqlite's thread and back, and SQLAlchemy's async layer adds its own
greenlet switch; the hops cost more than SQLite's own work. A
:class:`DbWorker` instead runs a whole function ``fn(connection)`` at once.
The function gets a plain :class:`sqlalchemy.Connection` (it may open an ORM
``Session(bind=connection)``).

- :meth:`DbWorker.run`: in a transaction that commits when ``fn`` returns and
  rolls back when it raises. SQLite: on a dedicated thread that owns a
  synchronous connection to the same file (same pragmas as
  :func:`core.db.create_engine`), so the event loop waits once per batch;
  writes run one after the other, in the order they were asked for.
- :meth:`DbWorker.read`: for reads that someone is waiting on (a screen pop).
  SQLite: right here on the event loop's thread, on a connection of its own:
  in WAL mode a reader never waits for a writer, the pages are in the cache,
  and the hand-off to a thread and back (and the fight for the GIL with the
  writer thread) would cost more than the reads themselves. It must stay
  small: a few indexed queries.
- PostgreSQL (asyncpg has no synchronous API): both on the async engine with
  ``run_sync``, the same function, each statement one network round trip.

Checkpoints: SQLite copies the write-ahead log back into the database file
when a commit finds the log over 1,000 pages, and that commit then waits for
the copy and its fsync (100 ms and more on a shared disk), and so would a
screen pop waiting for it. The worker's connection therefore never
checkpoints itself; at most every :data:`CHECKPOINT_EVERY` seconds after a
commit, a second thread runs a PASSIVE checkpoint on its own connection, which
waits for nobody and nobody waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from core.db import JSON_OPTIONS, sqlite_pragmas

T = TypeVar("T")
log = logging.getLogger(__name__)


#: Seconds between two checkpoints of the worker's writes (SQLite).
CHECKPOINT_EVERY = 1.0


class DbWorker:
    """Runs ``fn(connection)`` in one transaction, in one hop (see the module doc)."""

    def __init__(self, engine: AsyncEngine, observe: Callable[[float], None] | None = None) -> None:
        self._async = engine
        self._observe = observe  # called with the seconds of every batch (for /metrics)
        self._sync: Engine | None = None
        self._reader: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-checkpoint")
        self._checkpoint: asyncio.Future[None] | None = None
        self._last_checkpoint = 0.0
        url = engine.url
        self._path = url.database or ""
        if url.get_backend_name() == "sqlite" and self._path not in ("", ":memory:"):
            self._sync = create_engine(
                url.set(drivername="sqlite+pysqlite"),
                poolclass=StaticPool,  # one connection, used by the one thread only
                connect_args={"timeout": 30, "check_same_thread": False},
                **JSON_OPTIONS,
            )
            event.listen(self._sync, "connect", _worker_pragmas)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-worker")
            self._reader = create_engine(
                url.set(drivername="sqlite+pysqlite"),
                poolclass=StaticPool,  # one connection, used on the loop's thread only
                connect_args={"timeout": 1, "check_same_thread": False},
                **JSON_OPTIONS,
            )
            event.listen(self._reader, "connect", sqlite_pragmas)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` in a read transaction (see the module doc: SQLite reads
        run synchronously on the calling thread)."""
        if self._reader is None:
            async with self._async.connect() as conn:
                return await conn.run_sync(fn)
        with self._reader.connect() as reader, reader.begin():
            return fn(reader)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` in a transaction; its result, or its exception after rollback."""
        if self._observe is None:
            return await self._run(fn)
        started = time.perf_counter()
        try:
            return await self._run(fn)
        finally:
            self._observe(time.perf_counter() - started)

    async def _run(self, fn: Callable[[Connection], T]) -> T:
        if self._thread is None:
            async with self._async.begin() as conn:
                return await conn.run_sync(fn)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._thread, functools.partial(self._in_thread, fn))
        self._maybe_checkpoint(loop)
        return result

    def _maybe_checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        if now - self._last_checkpoint < CHECKPOINT_EVERY:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._last_checkpoint = now
        self._checkpoint = loop.run_in_executor(self._checkpointer, _checkpoint, self._path)
        self._checkpoint.add_done_callback(_report_checkpoint)

    def _in_thread(self, fn: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.begin() as conn:
            return fn(conn)

    async def close(self) -> None:
        """Finish the work under way and close the connection."""
        if self._thread is not None:
            assert self._sync is not None
            if self._checkpoint is not None:
                await asyncio.wait([self._checkpoint])
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync.dispose)
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._reader is not None:
            self._reader.dispose()
        self._checkpointer.shutdown(wait=True)


def _worker_pragmas(dbapi_connection: Any, record: Any) -> None:
    sqlite_pragmas(dbapi_connection, record)
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # see the module doc


def _checkpoint(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _report_checkpoint(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("SQLite checkpoint failed: %s", done.exception())
