"""Database engine and sessions: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL.

JSON columns are written and read with orjson (several times faster than the
stdlib's ``json`` for the address lists of every stored e-mail); it writes
UTF-8 where ``json`` writes ``\\u`` escapes, which either reads back the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core.files import make_private_dir, make_private_file

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, **JSON_OPTIONS)
    if parsed.database and parsed.database != ":memory:":
        prepare_sqlite_file(Path(parsed.database))
    engine = create_async_engine(url, connect_args={"timeout": 30}, **JSON_OPTIONS)
    event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


def prepare_sqlite_file(path: Path) -> None:
    """The database's directory (0700) and file (0600), made before SQLite opens it.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, so
    they are private too. A file left readable by others by an older version,
    and its ``-wal``/``-shm``, are made private.
    """
    make_private_dir(path.parent)
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if each is path or each.exists():
            make_private_file(each)


def json_dumps(value: Any) -> str:
    """A JSON column's value as text (orjson, non-str keys allowed as ``json`` does)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


#: Engine options for JSON columns, for every engine of ours (sync ones too).
JSON_OPTIONS: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The pragmas every SQLite connection of ours runs with (a "connect" listener)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
