"""The SQL table Asterisk writes (cdr_pgsql, cdr_adaptive_odbc, FreePBX's asteriskcdrdb).

One code path for PostgreSQL (asyncpg) and MySQL/MariaDB (aiomysql), through
SQLAlchemy Core; the table's name is a validated plain identifier and the
columns are quoted by the dialect (``end`` is a reserved word). The columns
are looked up once: the standard ``cdr`` table has ``start``/``answer``/``end``,
FreePBX's has ``calldate`` only (see :mod:`crmcomms.cdr.rows`). Rows are
filtered on the start column, which an index on it (``calldate`` in FreePBX)
makes cheap.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, column, func, literal_column, select, table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crmcomms.cdr.rows import BadCdrRow, CdrRow, row_from_mapping
from crmcomms.cdr.source import (
    LOGGED_BAD_ROWS,
    LONGEST_CALL,
    CdrSourceError,
    describe,
    mapping,
    select_calls,
)

log = logging.getLogger(__name__)

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}
_DAY = timedelta(days=1)


def driver_url(url: str) -> str:
    """``postgresql://`` / ``mysql://`` / ``mariadb://`` -> SQLAlchemy's async driver URL."""
    scheme, sep, rest = url.partition("://")
    base = scheme.partition("+")[0]
    if not sep or base not in _DRIVERS:
        raise CdrSourceError(f"cdr.url: unsupported scheme {scheme!r}")
    return f"{_DRIVERS[base]}://{rest}"


class SqlCdrSource:
    """The ``cdr`` table of PostgreSQL or MySQL/MariaDB; connects on first use."""

    def __init__(self, url: str, table_name: str = "cdr", zone: tzinfo = UTC) -> None:
        self._url = url
        self._table_name = table_name
        self._zone = zone
        self._engine: AsyncEngine | None = None
        self._columns: tuple[str, ...] | None = None

    @property
    def where(self) -> str:
        """The server and table, without the password (for messages)."""
        host = self._url.partition("://")[2].rpartition("@")[2]
        return f"{self._url.partition('://')[0]}://{host} table {self._table_name}"

    async def rows(self, since: datetime, until: datetime | None) -> list[CdrRow]:
        upper = None if until is None else until + timedelta(hours=1)
        raw = await self._select(since - LONGEST_CALL, upper)
        return select_calls(raw, since, until)

    async def check(self) -> str | None:
        try:
            columns = await self._known_columns()
        except CdrSourceError as exc:
            return str(exc)
        missing = {"linkedid", "channel", "dstchannel", "disposition"} - set(columns)
        if not {"start", "calldate"} & set(columns):
            missing.add("start")
        if missing:
            return f"cdr: {self.where} lacks column(s) {', '.join(sorted(missing))}"
        return None

    async def summary(self) -> str:
        newest = await self._newest()
        count = 0
        if newest is not None:
            count = sum(1 for row in await self._select(newest - _DAY, None))
        return describe(self.where, newest, count)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # ------------------------------------------------------------ queries

    def _engine_for(self) -> AsyncEngine:
        if self._engine is None:
            try:
                self._engine = create_async_engine(driver_url(self._url), pool_pre_ping=True)
            except ImportError as exc:
                raise CdrSourceError(
                    f"cdr.url: the driver is not installed ({exc.name}): pip install {exc.name}"
                ) from exc
        return self._engine

    async def _run(self, statement: Any) -> tuple[list[str], list[Any]]:
        try:
            async with self._engine_for().connect() as conn:
                result = await conn.execute(statement)
                return list(result.keys()), list(result.all())
        except (SQLAlchemyError, OSError) as exc:
            reason = getattr(exc, "orig", None) or exc
            text = " ".join(str(reason).split())
            raise CdrSourceError(f"cdr: {self.where}: {text}") from exc

    async def _known_columns(self) -> tuple[str, ...]:
        if self._columns is None:
            keys, _ = await self._run(
                select(literal_column("*")).select_from(table(self._table_name)).limit(0)
            )
            self._columns = tuple(key.lower() for key in keys)
        return self._columns

    async def _start_column(self) -> ColumnElement[Any]:
        columns = await self._known_columns()
        return column("start" if "start" in columns else "calldate")

    def _naive(self, when: datetime) -> datetime:
        """A parameter for a zone-less timestamp column, in the CDR's zone."""
        return when.astimezone(self._zone).replace(tzinfo=None)

    async def _select(self, lower: datetime, upper: datetime | None) -> list[CdrRow]:
        columns = await self._known_columns()
        start = await self._start_column()
        window = [start >= self._naive(lower)]
        if upper is not None:
            window.append(start <= self._naive(upper))
        keys, records = await self._run(
            select(*(column(name) for name in columns))
            .select_from(table(self._table_name))
            .where(*window)
        )
        return self._parse(mapping(keys, record) for record in records)

    def _parse(self, records: Any) -> list[CdrRow]:
        found: list[CdrRow] = []
        bad = 0
        for values in records:
            try:
                found.append(row_from_mapping(values, self._zone))
            except BadCdrRow as exc:
                bad += 1
                if bad <= LOGGED_BAD_ROWS:
                    log.warning(
                        "%s: CDR row skipped (linkedid %r, uniqueid %r): %s",
                        self.where,
                        values.get("linkedid"),
                        values.get("uniqueid"),
                        exc,
                    )
        if bad > LOGGED_BAD_ROWS:
            log.warning("%s: %d more bad CDR rows skipped", self.where, bad - LOGGED_BAD_ROWS)
        return found

    async def _newest(self) -> datetime | None:
        start = await self._start_column()
        _, records = await self._run(select(func.max(start)).select_from(table(self._table_name)))
        value = records[0][0] if records else None
        if not isinstance(value, datetime):
            return None
        when = value if value.tzinfo else value.replace(tzinfo=self._zone)
        return when.astimezone(UTC)
