"""Contacts export to CSV or XLSX, in the columns :mod:`core.importer` reads back.

``Name, First name, Last name, Company``, then ``Phone N - Type``/``Phone N -
Value`` and ``E-mail N - Type``/``E-mail N - Value`` pairs (the layout of
Google Contacts' CSV), as many as the contact with the most numbers needs.
Numbers are written as entered (``raw``): an import of the file into an empty
database gives the same contacts, labels included. CSV is UTF-8 with a BOM
(so that Excel opens it as UTF-8), comma-separated.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

import openpyxl
from sqlalchemy import Connection, select

from core.models import Contact, EmailAddress, Organization, PhoneNumber

Table = list[list[str]]


def export_table(conn: Connection) -> Table:
    """Header and one row per contact, by id."""
    phones: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for cid, label, raw in conn.execute(
        select(PhoneNumber.contact_id, PhoneNumber.label, PhoneNumber.raw).order_by(PhoneNumber.id)
    ):
        phones[cid].append((label, raw))
    emails: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for cid, label, address in conn.execute(
        select(EmailAddress.contact_id, EmailAddress.label, EmailAddress.address).order_by(
            EmailAddress.id
        )
    ):
        emails[cid].append((label, address))
    contacts = conn.execute(
        select(Contact.id, Contact.display_name, Contact.first_name, Contact.last_name,
               Organization.name)
        .outerjoin(Organization, Organization.id == Contact.organization_id)
        .order_by(Contact.id)
    ).all()  # fmt: skip
    most_phones = max((len(v) for v in phones.values()), default=1)
    most_emails = max((len(v) for v in emails.values()), default=1)
    table = [_header(most_phones, most_emails)]
    for cid, display, first, last, org in contacts:
        row = [display, first, last, org or ""]
        row += _pairs(phones[cid], most_phones) + _pairs(emails[cid], most_emails)
        table.append(row)
    return table


def _header(phones: int, emails: int) -> list[str]:
    header = ["Name", "First name", "Last name", "Company"]
    for kind, count in (("Phone", phones), ("E-mail", emails)):
        for n in range(1, count + 1):
            header += [f"{kind} {n} - Type", f"{kind} {n} - Value"]
    return header


def _pairs(items: list[tuple[str, str]], width: int) -> list[str]:
    cells: list[str] = []
    for label, value in items:
        cells += [label, value]
    return cells + [""] * (2 * width - len(cells))


def to_csv(table: Table) -> bytes:
    """The table as UTF-8 CSV with a BOM."""
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(table)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(table: Table) -> bytes:
    """The table as an XLSX workbook, every cell text (numbers keep their leading 0 and +)."""
    book: Any = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    for row in table:
        sheet.append([_text_cell(sheet, value) for value in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _text_cell(sheet: Any, value: str) -> Any:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"  # a name starting with "=" stays text, never a formula
    cell.number_format = "@"
    return cell
