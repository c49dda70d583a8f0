"""Bulk inserts of a batch's rows: straight to the driver on SQLite.

SQLAlchemy runs every parameter of every row through its bind processors
(JSON, dates, booleans) and builds an execution context per statement; for a
batch of 500 messages that cost more than SQLite's own inserts. On SQLite,
``insert_rows`` therefore converts the values here, to exactly what those
processors store (JSON text from :func:`core.db.json_dumps`, UTC dates as
``YYYY-MM-DD HH:MM:SS.ffffff``), fills the Python-side defaults of the
columns not given, and hands the tuples to the driver's ``executemany``.
Read back through the ORM, the rows are the same (the tests compare both
paths). PostgreSQL goes through SQLAlchemy as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, ColumnDefault, Connection, Table, insert, select
from sqlalchemy.orm import Session

from core.db import json_dumps
from core.models import UtcDateTime

_Convert = Callable[[Any], Any]


def is_sqlite(session: Session) -> bool:
    """Whether ``session`` writes to SQLite (the driver-level path)."""
    return session.connection().dialect.name == "sqlite"


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (column name -> value, the same names in every row)."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), list(rows))
        return
    names = list(rows[0])
    converts = [_converter(table.c[name]) for name in names]
    defaults = [(c.name, _default(c)) for c in table.c if c.name not in rows[0] and c.default]
    values = [
        (*(f(row[n]) if f else row[n] for n, f in zip(names, converts, strict=True)),)
        for row in rows
    ]
    if defaults:
        extra = tuple(value for _, value in defaults)
        values = [row + extra for row in values]
        names += [name for name, _ in defaults]
    _executemany(conn, table, names, values)


def keyed_ids(session: Session, table: Table, mailbox: str, keys: Sequence[str]) -> dict[str, int]:
    """``dedupe_key -> id`` of ``table``'s rows of ``mailbox`` with these keys."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), 500):  # well below SQLite's bound on parameters
        part = keys[start : start + 500]
        rows = session.execute(
            select(table.c.dedupe_key, table.c.id).where(
                table.c.mailbox == mailbox, table.c.dedupe_key.in_(part)
            )
        )
        found.update((key, id_) for key, id_ in rows)
    return found


def sqlite_datetime(value: datetime | None) -> str | None:
    """A date as ``UtcDateTime`` stores it on SQLite (UTC, without zone)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given; use timezone-aware UTC")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _converter(column: Column[Any]) -> _Convert | None:
    if isinstance(column.type, JSON):
        return json_dumps
    if isinstance(column.type, UtcDateTime):
        return sqlite_datetime
    return None


def _default(column: Column[Any]) -> Any:
    """The value SQLAlchemy would give a column left out of an insert."""
    default = column.default
    assert isinstance(default, ColumnDefault)  # no Sequence on these tables
    value = default.arg(None) if default.is_callable else default.arg
    convert = _converter(column)
    return convert(value) if convert is not None else value


def _executemany(
    conn: Connection, table: Table, names: Sequence[str], values: list[tuple[Any, ...]]
) -> None:
    columns = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join("?" * len(names))
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({columns}) VALUES ({marks})', values)
