"""Where CDR rows come from: a cdr_custom file, or the SQL table Asterisk writes.

Every source answers :meth:`CdrSource.rows` with the rows of every call
(``linkedid``) that has a row overlapping the window ``[since, until]``
(``until`` None: up to the newest row) - all of that call's rows, also those
outside the window, so a call is always judged on its whole record. Rows are
looked for among those that started up to :data:`LONGEST_CALL` before
``since``; a leg of a longer call is not found.

A row that cannot be read is logged (file line, or linkedid) and skipped; a
source that cannot be read at all raises :class:`CdrSourceError`.

Time zones: CDR times carry none; they are read in ``cdr.timezone`` (UTC by
default) - see :mod:`crmcomms.cdr.rows`.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from crmcomms.cdr.rows import COLUMNS, BadCdrRow, CdrRow, row_from_fields
from crmcomms.config import CdrSettings

log = logging.getLogger(__name__)

#: How long before a window's start a call's first row may have started.
LONGEST_CALL = timedelta(hours=8)
#: Bad rows logged one by one per read; the rest are only counted.
LOGGED_BAD_ROWS = 5
_DAY = timedelta(days=1)


class CdrSourceError(Exception):
    """The CDR source cannot be read: file missing, server unreachable, no such table."""


class CdrSource(Protocol):
    """Asterisk's CDR, read on demand (a file or an SQL table)."""

    async def rows(self, since: datetime, until: datetime | None) -> list[CdrRow]:
        """The rows of every call with a row overlapping ``[since, until]``."""
        ...

    async def check(self) -> str | None:
        """One line saying what is wrong (for check-config), None if it reads fine."""
        ...

    async def summary(self) -> str:
        """One line for check-config: what it is, rows in the last day of records."""
        ...

    async def close(self) -> None:
        """Release connections; the source is not used afterwards."""
        ...


def open_source(settings: CdrSettings) -> CdrSource | None:
    """The configured source, or None without ``[cdr]``. Connects on first use."""
    zone = ZoneInfo(settings.timezone)
    if settings.csv:
        return CsvCdrSource(Path(settings.csv), zone)
    if url := settings.url.get_secret_value():
        from crmcomms.cdr.sql import SqlCdrSource  # SQLAlchemy only when configured

        return SqlCdrSource(url, settings.table, zone)
    return None


def select_calls(rows: Iterable[CdrRow], since: datetime, until: datetime | None) -> list[CdrRow]:
    """All rows of the calls that have a row overlapping ``[since, until]``."""
    rows = list(rows)
    wanted = {
        row.linkedid for row in rows if row.end >= since and (until is None or row.start <= until)
    }
    return [row for row in rows if row.linkedid in wanted]


class CsvCdrSource:
    """A cdr_custom file with the standard columns (mapping in the README).

    Read in a worker thread, streamed line by line: only rows that started
    from :data:`LONGEST_CALL` before the window on are parsed (the start
    field is compared as text, which sorts like the time).
    """

    def __init__(self, path: Path, zone: tzinfo = UTC) -> None:
        self.path = path
        self._zone = zone

    async def rows(self, since: datetime, until: datetime | None) -> list[CdrRow]:
        return await asyncio.to_thread(self._read, since, until)

    async def check(self) -> str | None:
        try:
            first = await asyncio.to_thread(self._first_line)
        except CdrSourceError as exc:
            return str(exc)
        if first is not None and len(first) != len(COLUMNS):
            return (
                f"cdr.csv: {self.path}: {len(first)} fields a line, expected {len(COLUMNS)}: "
                "use cdr_custom with the mapping in the README "
                "(cdr_csv's Master.csv has no linkedid)"
            )
        return None

    async def summary(self) -> str:
        newest = await asyncio.to_thread(self._newest)
        return describe(f"file {self.path}", newest, await self._day(newest))

    async def close(self) -> None:
        return None

    async def _day(self, newest: datetime | None) -> int:
        if newest is None:
            return 0
        rows = await self.rows(newest - _DAY, None)
        return sum(1 for row in rows if row.start >= newest - _DAY)

    def _read(self, since: datetime, until: datetime | None) -> list[CdrRow]:
        lower = self._text(since - LONGEST_CALL)
        upper = None if until is None else self._text(until + timedelta(hours=1))
        found: list[CdrRow] = []
        bad = 0
        for line, fields in self._lines():
            start = fields[9] if len(fields) > 9 else ""
            if len(fields) == len(COLUMNS) and (start < lower or (upper and start > upper)):
                continue
            try:
                found.append(row_from_fields(fields, self._zone))
            except BadCdrRow as exc:
                bad += 1
                if bad <= LOGGED_BAD_ROWS:
                    log.warning("%s line %d: CDR row skipped: %s", self.path, line, exc)
        if bad > LOGGED_BAD_ROWS:
            log.warning("%s: %d more bad CDR rows skipped", self.path, bad - LOGGED_BAD_ROWS)
        return select_calls(found, since, until)

    def _text(self, when: datetime) -> str:
        """A time as the file writes it (local to the CDR zone)."""
        return when.astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S")

    def _lines(self) -> Iterator[tuple[int, list[str]]]:
        try:
            with self.path.open(newline="", encoding="utf-8", errors="replace") as file:
                reader = csv.reader(file)
                for fields in reader:
                    if fields:
                        yield reader.line_num, fields
        except OSError as exc:
            raise CdrSourceError(f"cdr.csv: cannot read {self.path}: {exc.strerror}") from exc

    def _first_line(self) -> list[str] | None:
        return next((fields for _, fields in self._lines()), None)

    def _newest(self) -> datetime | None:
        newest: datetime | None = None
        for _, fields in self._lines():
            try:
                row = row_from_fields(fields, self._zone)
            except BadCdrRow:
                continue
            newest = row.start if newest is None else max(newest, row.start)
        return newest


def describe(what: str, newest: datetime | None, last_day: int) -> str:
    """The check-config line of a readable source."""
    if newest is None:
        return f"{what}: readable, no rows yet (cdr.conf: enable = yes, unanswered = yes)"
    stamp = newest.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{what}: newest row started {stamp}, {last_day} row(s) in the day before it"


def mapping(keys: Iterable[str], values: Iterable[Any]) -> dict[str, Any]:
    """Column names to values (SQL rows), names lower-cased."""
    return {key.lower(): value for key, value in zip(keys, values, strict=True)}
