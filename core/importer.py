"""Contacts import from CSV and XLSX files that never loses a person.

Reading is sans I/O: :func:`read_rows` turns the bytes of a file into
:class:`RawRow` values (CSV: delimiter among ``, ; TAB |`` taken from the
header line; UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode
text"), else the charset ``charset-normalizer`` finds, Western files as
cp1252; XLSX: first sheet). Column names are matched loosely, in English and
German (``Vorname``, ``E-Mail``, ``Telefon privat``...); a label column
(``Phone 1 - Type`` next to ``Phone 1 - Value``, as Google Contacts and
:mod:`core.export` write them) gives the label of its value column, else the
column title is the label.

:func:`import_rows` stores the rows in batches (see :mod:`core.import_store`
for what is a duplicate, what is merged and what is only a warning). Row
numbers are the ones the user sees (header = row 1).
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import functools
import io
import pickle
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import charset_normalizer
import openpyxl

from core.dbthread import DbWorker
from core.errors import InvalidInput

if TYPE_CHECKING:
    from core.import_store import Prepared

_FIELDS = {
    "name": "name", "fullname": "name", "displayname": "name", "kontakt": "name",
    "contactname": "name", "kontaktname": "name", "vollername": "name",
    "firstname": "first_name", "givenname": "first_name", "vorname": "first_name",
    "lastname": "last_name", "surname": "last_name", "familyname": "last_name",
    "nachname": "last_name", "familienname": "last_name",
    "company": "organization", "companyname": "organization", "organization": "organization",
    "organisation": "organization", "org": "organization", "firma": "organization",
    "unternehmen": "organization", "firmenname": "organization",
}  # fmt: skip
_PHONE_WORDS = frozenset(
    {"phone", "telephone", "tel", "telefon", "telefonnummer", "phonenumber", "mobile",
     "mobil", "mobiltelefon", "handy", "cell", "cellphone", "fon", "festnetz"}
)  # fmt: skip
_EMAIL_WORDS = frozenset({"email", "mail", "emailaddress", "emailadresse", "mailadresse"})
_LABEL_WORDS = frozenset({"type", "label", "typ", "bezeichnung"})
_VALUE_WORDS = frozenset({"value", "wert"})
_DELIMITERS = ",;\t|"
_WESTERN = frozenset({"ascii", "latin_1", "cp1252", "iso8859_15", "iso8859_1"})
_SAMPLE = 256 * 1024
BATCH = 500


@dataclass(frozen=True, slots=True)
class RawRow:
    """One data row of an import file, by meaning; ``row`` is its number in the file."""

    row: int
    name: str = ""
    first_name: str = ""
    last_name: str = ""
    organization: str = ""
    phones: tuple[tuple[str, str], ...] = ()  # (label, number as written)
    emails: tuple[tuple[str, str], ...] = ()  # (label, address as written)


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that was not imported, and why."""

    row: int
    reason: str


@dataclass(frozen=True, slots=True)
class RowWarning:
    """A row that was imported, with something the user should look at."""

    row: int
    reason: str


@dataclass(frozen=True, slots=True)
class RowDuplicate:
    """A row that is a contact already known (``contact_id``; None in a dry run when it is
    an earlier row of the file): skipped, or merged into it with ``update``."""

    row: int
    contact_id: int | None
    reason: str
    merged: bool = False


@dataclass(frozen=True, slots=True)
class ImportReport:
    """The outcome of an import: what was created, merged, left out, and why."""

    created: int
    errors: tuple[RowError, ...]
    duplicates: tuple[RowDuplicate, ...]
    warnings: tuple[RowWarning, ...] = ()
    updated: int = 0
    rows: int = 0
    dry_run: bool = False

    @property
    def clean(self) -> bool:
        """No row had an error or a warning (``--strict`` exits 1 otherwise)."""
        return not (self.errors or self.warnings)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the report."""
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "dry_run": self.dry_run,
            "errors": [{"row": e.row, "reason": e.reason} for e in self.errors],
            "warnings": [{"row": w.row, "reason": w.reason} for w in self.warnings],
            "duplicates": [
                {"row": d.row, "contact_id": d.contact_id, "reason": d.reason, "merged": d.merged}
                for d in self.duplicates
            ],
        }


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How to import: the region of national numbers, merge by e-mail, or only report."""

    region: str
    update: bool = False
    dry_run: bool = False


@dataclass(slots=True)
class Progress:
    """Rows done of the total, for a progress line or the API."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.done / max(time.monotonic() - self.started, 1e-6)

    @property
    def eta(self) -> float | None:
        """Seconds still to go, once the rate is known."""
        return (self.total - self.done) / self.rate if self.done else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        eta = self.eta
        return {
            "total": self.total,
            "done": self.done,
            "rows_per_second": round(self.rate, 1),
            "eta_seconds": None if eta is None else round(eta, 1),
        }


# --- importing -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackedRows:
    """A file's rows in batches of :data:`BATCH`, each pickled (:func:`read_packed`)."""

    batches: tuple[tuple[int, bytes], ...]  # (rows in the batch, the pickled rows)

    @property
    def total(self) -> int:
        """The file's rows."""
        return sum(size for size, _ in self.batches)


def read_packed(data: bytes, filename: str) -> PackedRows:
    """:func:`read_rows`, packed for the way back from a parser process: a few bytes
    objects instead of 50,000 rows, which the daemon would unpickle in one piece
    while holding the GIL, then keep for the collector to scan during the whole
    import. Each batch is unpickled where it is prepared (:func:`prepare_packed`)."""
    rows = read_rows(data, filename)
    batches = tuple(
        (len(batch), pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        for batch in (rows[start : start + BATCH] for start in range(0, len(rows), BATCH))
    )
    return PackedRows(batches)


def prepare_packed(batch: bytes, region: str) -> list[Prepared]:
    """:func:`core.import_store.prepare_batch` of one batch of :class:`PackedRows`."""
    from core.import_store import prepare_batch

    rows: list[RawRow] = pickle.loads(batch)  # our own rows, from our parser process
    return prepare_batch(rows, region)


async def import_rows(
    db: DbWorker,
    rows: Sequence[RawRow] | PackedRows,
    options: ImportOptions,
    on_progress: Callable[[Progress], None] | None = None,
    executor: Executor | None = None,
) -> ImportReport:
    """Import ``rows`` in batches of :data:`BATCH`: each batch is prepared (numbers
    parsed) by ``executor`` (a process pool keeps that CPU work off the event loop's
    GIL; None: a thread) and stored in one transaction of the database worker, so
    the event loop stays free and other writers get their turn between batches."""
    from core.import_store import FileState, prepare_batch, store_batch

    loop = asyncio.get_running_loop()
    state = FileState(options)
    jobs: list[tuple[int, Callable[[Any, str], list[Prepared]], Any]]
    if isinstance(rows, PackedRows):
        total = rows.total
        jobs = [(size, prepare_packed, pickled) for size, pickled in rows.batches]
    else:
        total = len(rows)
        slices = (rows[start : start + BATCH] for start in range(0, total, BATCH))
        jobs = [(len(batch), prepare_batch, batch) for batch in slices]
    progress = Progress(total)
    for size, prepare, batch in jobs:
        prepared = await loop.run_in_executor(executor, prepare, batch, options.region)
        await db.run(functools.partial(store_batch, state, prepared))
        progress.done += size
        if on_progress is not None:
            on_progress(progress)
    return state.report(total)


# --- reading -------------------------------------------------------------------


def read_rows(data: bytes, filename: str) -> list[RawRow]:
    """The data rows of a CSV or XLSX file; InvalidInput('file', ...) when unreadable."""
    table: Iterable[tuple[int, list[str]]]
    if filename.lower().endswith((".xlsx", ".xlsm")) or data.startswith(b"PK\x03\x04"):
        table = _xlsx_table(data)
    elif filename.lower().endswith(".xls"):
        raise InvalidInput("file", "old .xls files are not supported; save as .xlsx or CSV")
    else:
        table = _csv_table(data)
    return rows_from_table(table)


def rows_from_table(table: Iterable[tuple[int, list[str]]]) -> list[RawRow]:
    """Map ``(row number, cells)`` to RawRows by the header (first non-empty row)."""
    rows = (item for item in table if any(cell.strip() for cell in item[1]))
    header = next(rows, None)
    if header is None:
        raise InvalidInput("file", "the file is empty")
    columns = [_column(title) for title in header[1]]
    if not any(kind in ("name", "first_name", "last_name", "organization", "phone", "email")
               for kind, _ in columns):  # fmt: skip
        raise InvalidInput("file", "no known column (name, company, phone, e-mail...) in header")
    return [_raw_row(number, cells, columns, header[1]) for number, cells in rows]


def _words(title: str) -> set[str]:
    return {w for w in re.split(r"[^a-zäöüß0-9]+", title.lower()) if w}


def _column(title: str) -> tuple[str | None, str]:
    """(what the column holds, the base that pairs a label column with its value column)."""
    squashed = re.sub(r"[\s_\-.]+", "", title.strip().lower()).rstrip("0123456789")
    if squashed in _FIELDS:
        return _FIELDS[squashed], ""
    words = _words(title) | {squashed}
    base = "".join(w for w in re.split(r"[^a-zäöüß0-9]+", title.lower())
                   if w and w not in _LABEL_WORDS | _VALUE_WORDS)  # fmt: skip
    kind = "email" if words & _EMAIL_WORDS else "phone" if words & _PHONE_WORDS else None
    if kind is not None and words & _LABEL_WORDS:
        return f"{kind}_label", base
    return kind, base


def _raw_row(
    number: int, cells: list[str], columns: list[tuple[str | None, str]], titles: list[str]
) -> RawRow:
    labels = {
        base: cell.strip()[:40]
        for (kind, base), cell in zip(columns, cells, strict=False)
        if kind is not None and kind.endswith("_label")
    }
    fields: dict[str, str] = {}
    found: dict[str, list[tuple[str, str]]] = {"phone": [], "email": []}
    for (kind, base), title, cell in zip(columns, titles, cells, strict=False):
        value = cell.strip()
        if kind is None or kind.endswith("_label") or not value:
            continue
        if kind in found:
            found[kind].append((labels.get(base, title.strip()[:40]), value))
        else:
            fields.setdefault(kind, value)
    return RawRow(number, phones=tuple(found["phone"]), emails=tuple(found["email"]), **fields)


def _csv_table(data: bytes) -> Iterator[tuple[int, list[str]]]:
    text = decode(data)
    first_line = text.split("\n", 1)[0]
    delimiter = max(_DELIMITERS, key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidInput("file", f"line {reader.line_num}: {exc}") from exc


def decode(data: bytes) -> str:
    """The text of a CSV file: UTF-8 (BOM or not), UTF-16 with BOM, else as detected."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    return data.decode(_detect(data[:_SAMPLE]), errors="replace")


def _detect(sample: bytes) -> str:
    # Short samples fit several code pages equally well: then the Western one wins
    # (cp1250's "č" for cp1252's "è" would spoil every French name).
    matches = charset_normalizer.from_bytes(sample)
    best = matches.best()
    if best is None or any(m.encoding in _WESTERN and m.chaos <= best.chaos for m in matches):
        return "cp1252"
    return str(best.encoding)


def _xlsx_table(data: bytes) -> list[tuple[int, list[str]]]:
    try:
        return _first_sheet(data)
    except Exception as exc:  # a broken file makes zipfile, zlib, the XML parser and
        # openpyxl raise a dozen kinds of error, while opening and while reading
        raise InvalidInput("file", f"not a readable XLSX file ({type(exc).__name__})") from exc


def _first_sheet(data: bytes) -> list[tuple[int, list[str]]]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheet = book.worksheets[0]
        return [
            (number, [_cell_text(value) for value in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        ]
    finally:
        book.close()


def _cell_text(value: object) -> str:
    # Spreadsheets store phone numbers as numbers: 4930123456.0 must not become "4.93e10".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)
