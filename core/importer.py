"""Contacts import from CSV and XLSX files, with an error and duplicate report.

Reading is sans I/O: :func:`read_rows` turns the bytes of a file into
:class:`RawRow` values (CSV: delimiter among ``, ; TAB |`` taken from the
header line, UTF-8 with or without BOM, else cp1252; XLSX: first sheet).
Column names are matched loosely, in English and German (``Vorname``,
``E-Mail``, ``Telefon privat``...). :func:`import_contacts` validates the
rows, reports bad ones and duplicates (of existing contacts or of an earlier
row) by the row number the user sees (header = row 1), and stores the rest
in batches; the caller commits, so an import is all or nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openpyxl
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.contacts import (
    ContactInput,
    EmailInput,
    Owner,
    PhoneInput,
    PreparedContact,
    find_owners,
    organization_ids,
    prepare_contact,
)
from core.errors import InvalidInput
from core.models import Contact, EmailAddress, PhoneNumber
from core.phones import NormalisedNumber, rev_digits

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
_DELIMITERS = ",;\t|"
_BATCH = 1000


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
class RowDuplicate:
    """A row not imported because its phone or e-mail already belongs to ``contact_id``."""

    row: int
    contact_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """The outcome of an import: how many were created, what was left out and why."""

    created: int
    errors: tuple[RowError, ...]
    duplicates: tuple[RowDuplicate, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the report."""
        return {
            "created": self.created,
            "errors": [{"row": e.row, "reason": e.reason} for e in self.errors],
            "duplicates": [
                {"row": d.row, "contact_id": d.contact_id, "reason": d.reason}
                for d in self.duplicates
            ],
        }


# --- reading -----------------------------------------------------------------


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
    if not any(columns):
        raise InvalidInput("file", "no known column (name, company, phone, e-mail...) in header")
    return [_raw_row(number, cells, columns, header[1]) for number, cells in rows]


def _column(title: str) -> str | None:
    squashed = re.sub(r"[\s_\-.]+", "", title.strip().lower()).rstrip("0123456789")
    if squashed in _FIELDS:
        return _FIELDS[squashed]
    words = set(re.split(r"[^a-zäöüß0-9]+", title.lower())) | {squashed}
    if words & _EMAIL_WORDS:
        return "email"
    if words & _PHONE_WORDS:
        return "phone"
    return None


def _raw_row(number: int, cells: list[str], columns: list[str | None], titles: list[str]) -> RawRow:
    fields: dict[str, str] = {}
    phones: list[tuple[str, str]] = []
    emails: list[tuple[str, str]] = []
    for column, title, cell in zip(columns, titles, cells, strict=False):
        value = cell.strip()
        if column is None or not value:
            continue
        if column == "phone":
            phones.append((title.strip()[:40], value))
        elif column == "email":
            emails.append((title.strip()[:40], value))
        else:
            fields.setdefault(column, value)
    return RawRow(number, phones=tuple(phones), emails=tuple(emails), **fields)


def _csv_table(data: bytes) -> Iterator[tuple[int, list[str]]]:
    text = _decode(data)
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


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


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


# --- importing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Accepted:
    row: int
    contact: PreparedContact
    keys: tuple[str, ...]


async def import_contacts(
    session: AsyncSession, rows: Sequence[RawRow], region: str
) -> ImportReport:
    """Validate ``rows``, skip bad ones and duplicates, store the rest (flushed; caller commits)."""
    errors: list[RowError] = []
    prepared: list[tuple[int, PreparedContact]] = []
    for raw in rows:
        try:
            prepared.append((raw.row, _prepare(raw, region)))
        except InvalidInput as exc:
            errors.append(RowError(raw.row, exc.message))
    owners = await find_owners(
        session,
        (_phone_key(n) for _, c in prepared for n, _ in c.phones),
        (address for _, c in prepared for address, _ in c.emails),
    )
    accepted, duplicates, earlier = _dedupe(prepared, owners)
    ids = await _store(session, [a.contact for a in accepted])
    row_ids = {a.row: cid for a, cid in zip(accepted, ids, strict=True)}
    duplicates += [RowDuplicate(row, row_ids[first], why) for row, first, why in earlier]
    return ImportReport(
        created=len(ids),
        errors=tuple(errors),
        duplicates=tuple(sorted(duplicates, key=lambda d: d.row)),
    )


def _prepare(raw: RawRow, region: str) -> PreparedContact:
    if not (raw.name or raw.first_name or raw.last_name or raw.organization):
        if not (raw.phones or raw.emails):
            raise InvalidInput("row", "no name, company, phone or e-mail")
    for (label, value), longest in [(p, 64) for p in raw.phones] + [(e, 320) for e in raw.emails]:
        if len(value) > longest:  # the widths of PhoneNumber.raw and EmailAddress.address
            raise InvalidInput("row", f"{label} {value[:30]!r}... is too long")
    # Names longer than their columns are cut rather than refused.
    data = ContactInput(
        first_name=raw.first_name[:100],
        last_name=raw.last_name[:100],
        display_name=raw.name[:200] or None,
        organization=raw.organization[:200] or None,
        phones=tuple(PhoneInput(raw=number, label=label) for label, number in raw.phones),
        emails=tuple(EmailInput(address=address, label=label) for label, address in raw.emails),
    )
    return prepare_contact(data, region)


def _phone_key(number: NormalisedNumber) -> str:
    return number.e164 or number.digits


def _keys(contact: PreparedContact) -> list[tuple[str, str]]:
    """(key, how to say it) for each phone and e-mail of a contact."""
    return [(_phone_key(n), f"phone {_phone_key(n)}") for n, _ in contact.phones] + [
        (address, f"e-mail {address}") for address, _ in contact.emails
    ]


def _dedupe(
    prepared: list[tuple[int, PreparedContact]], owners: dict[str, Owner]
) -> tuple[list[_Accepted], list[RowDuplicate], list[tuple[int, int, str]]]:
    """Split rows into accepted ones, duplicates of existing contacts, and of earlier rows."""
    accepted: list[_Accepted] = []
    existing: list[RowDuplicate] = []
    earlier: list[tuple[int, int, str]] = []
    seen: dict[str, int] = {}
    for row, contact in prepared:
        keys = _keys(contact)
        owned = next(((k, said) for k, said in keys if k in owners), None)
        repeated = next(((k, said) for k, said in keys if k in seen), None)
        if owned is not None:
            owner = owners[owned[0]]
            why = f"{owned[1]} already belongs to contact {owner.contact_id} ({owner.display_name})"
            existing.append(RowDuplicate(row, owner.contact_id, why))
        elif repeated is not None:
            first = seen[repeated[0]]
            earlier.append((row, first, f"{repeated[1]} already in row {first} of this file"))
        else:
            accepted.append(_Accepted(row, contact, tuple(k for k, _ in keys)))
            seen.update((k, row) for k, _ in keys)
    return accepted, existing, earlier


async def _store(session: AsyncSession, contacts: list[PreparedContact]) -> list[int]:
    """Insert contacts with their phones and e-mails in batches; their new ids, in order."""
    org_ids = await organization_ids(session, (c.organization for c in contacts if c.organization))
    ids: list[int] = []
    now = datetime.now(UTC)
    for start in range(0, len(contacts), _BATCH):
        batch = contacts[start : start + _BATCH]
        rows = [_contact_row(c, org_ids, now) for c in batch]
        statement = insert(Contact).returning(Contact.id, sort_by_parameter_order=True)
        new_ids = list((await session.scalars(statement, rows)).all())
        await _insert(session, PhoneNumber, _phone_rows(batch, new_ids))
        await _insert(session, EmailAddress, _email_rows(batch, new_ids))
        ids += new_ids
    return ids


def _contact_row(c: PreparedContact, org_ids: dict[str, int], now: datetime) -> dict[str, Any]:
    return {
        "first_name": c.first_name,
        "last_name": c.last_name,
        "display_name": c.display_name,
        "organization_id": org_ids.get(c.organization or ""),
        "search_key": c.search_key(),
        "created_at": now,
        "updated_at": now,
    }


def _phone_rows(batch: list[PreparedContact], ids: list[int]) -> list[dict[str, Any]]:
    return [
        {"contact_id": cid, "raw": n.raw, "e164": n.e164, "rev_digits": rev_digits(n), "label": lb}
        for c, cid in zip(batch, ids, strict=True)
        for n, lb in c.phones
    ]


def _email_rows(batch: list[PreparedContact], ids: list[int]) -> list[dict[str, Any]]:
    return [
        {"contact_id": cid, "address": address, "label": label}
        for c, cid in zip(batch, ids, strict=True)
        for address, label in c.emails
    ]


async def _insert(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(model), rows)
