"""Contacts import: reading CSV/XLSX files, and importing them into a real SQLite database."""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from core.contacts import ContactInput, PhoneInput, create_contact
from core.search import search_contacts
from core.db import SessionFactory
from core.errors import InvalidInput
from core.importer import RawRow, RowDuplicate, RowError, import_contacts, read_rows
from core.models import Contact

REGION = "DE"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "import"


def read(name: str) -> list[RawRow]:
    return read_rows((FIXTURES / name).read_bytes(), name)


def test_comma_utf8() -> None:
    rows = read("comma_utf8.csv")
    assert rows[0] == RawRow(
        row=2,
        name="Anna Schmidt",
        organization="Acme GmbH",
        phones=(("Phone", "030 1234567"), ("Mobile", "0171 1234567")),
        emails=(("E-Mail", "anna@acme.example"),),
    )
    assert [r.name for r in rows] == ["Anna Schmidt", "Bernd Meier", "Chloé Martin"]


def test_semicolon_utf8_with_bom_and_german_headers() -> None:
    rows = read("semicolon_bom.csv")
    assert rows[0] == RawRow(
        row=2,
        first_name="Jürgen",
        last_name="Müller",
        organization="Bäckerei Größe",
        phones=(("Telefon", "(0221) 987-6543"),),
        emails=(("E-Mail", "juergen@baeckerei.example"),),
    )
    assert rows[1].phones == (("Handy", "0151 23456789"),)


def test_tab_cp1252() -> None:
    rows = read("tab_cp1252.csv")
    assert [(r.first_name, r.last_name, r.organization) for r in rows] == [
        ("Käthe", "Groß", "Möbel Schäfer"),
        ("François", "Lefèvre", ""),
    ]
    assert rows[0].phones == (("telephone", "+43 1 5344 0"),)


def test_pipe_and_labelled_columns() -> None:
    (row,) = read("pipe_mixed.csv")
    assert row.name == "Dora Diaz"
    assert row.phones == (
        ("Telefon privat", "030 7654321"),
        ("Telefon geschäftlich", "040 1234567"),
    )
    assert row.emails == (("E-Mail 2", "dora@example.com"),)


def test_row_numbers_count_the_header_and_multi_line_cells() -> None:
    rows = read("bad_rows.csv")
    assert [r.row for r in rows][:4] == [2, 3, 4, 6]
    assert rows[3].name == "Multi\nLine"
    assert rows[4].row == 8


def xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for values in rows:
        sheet.append(values)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_first_sheet_with_numeric_phones() -> None:
    data = xlsx(
        [
            ["Vorname", "Nachname", "Firma", "Mobil", "Mail"],
            ["Käthe", "Groß", "Möbel Schäfer", 4915123456789, "k@moebel.example"],
            [None, None, None, None, None],
            ["Otto", "Ohne", None, 301234567.0, None],
        ]
    )
    rows = read_rows(data, "kontakte.xlsx")
    assert rows == [
        RawRow(
            2,
            first_name="Käthe",
            last_name="Groß",
            organization="Möbel Schäfer",
            phones=(("Mobil", "4915123456789"),),
            emails=(("Mail", "k@moebel.example"),),
        ),
        RawRow(4, first_name="Otto", last_name="Ohne", phones=(("Mobil", "301234567"),)),
    ]


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "empty.csv"),
        (b"colour,size\nred,1\n", "unknown.csv"),
        (b"PK\x03\x04 broken", "broken.xlsx"),
        (b"\xd0\xcf\x11\xe0", "old.xls"),
    ],
)
def test_unreadable_files(data: bytes, filename: str) -> None:
    with pytest.raises(InvalidInput) as info:
        read_rows(data, filename)
    assert info.value.field == "file"


async def test_import_reports_bad_rows_and_duplicates(db: SessionFactory) -> None:
    async with db.begin() as session:
        existing = await create_contact(
            session,
            ContactInput(display_name="Erika Alt", phones=(PhoneInput(raw="030 9999999"),)),
            REGION,
        )
        report = await import_contacts(session, read("bad_rows.csv"), REGION)
        names = [c.display_name for c in await search_contacts(session, "", REGION)]
    assert report.errors == (
        RowError(3, "invalid e-mail address 'not-an-address'"),
        RowError(4, "'030 12' is not a valid phone number for DE"),
        RowError(14, "'call me maybe' is not a valid phone number for DE"),
    )
    assert report.created == 5
    assert sorted(names) == sorted(
        ["Erika Alt", "Good One", "Multi\nLine", "Only Company Ltd", "No Name", "0176 3333333"]
    )
    good_id = (await _ids_by_name(db))["Good One"]
    assert report.duplicates == (
        RowDuplicate(8, good_id, "phone +49301111111 already in row 2 of this file"),
        RowDuplicate(9, good_id, "e-mail good@example.com already in row 2 of this file"),
        RowDuplicate(
            10,
            existing.id,
            f"phone +49309999999 already belongs to contact {existing.id} (Erika Alt)",
        ),
    )
    assert report.to_json()["duplicates"][2]["contact_id"] == existing.id


async def _ids_by_name(db: SessionFactory) -> dict[str, int]:
    async with db.begin() as session:
        rows = await session.execute(select(Contact.display_name, Contact.id))
        return {name: cid for name, cid in rows}


@pytest.mark.parametrize(
    "name", ["comma_utf8.csv", "semicolon_bom.csv", "tab_cp1252.csv", "pipe_mixed.csv"]
)
async def test_import_each_file_then_again_finds_all_duplicates(
    db: SessionFactory, name: str
) -> None:
    rows = read(name)
    async with db.begin() as session:
        first = await import_contacts(session, rows, REGION)
        again = await import_contacts(session, rows, REGION)
        count = await session.scalar(select(func.count()).select_from(Contact))
    assert (first.created, first.errors, first.duplicates) == (len(rows), (), ())
    assert (again.created, len(again.duplicates)) == (0, len(rows))
    assert count == len(rows)


async def test_imported_contacts_are_complete(db: SessionFactory) -> None:
    async with db.begin() as session:
        await import_contacts(session, read("semicolon_bom.csv"), REGION)
        (card,) = await search_contacts(session, "jürgen", REGION)
        (by_phone,) = await search_contacts(session, "+4915123456789", REGION)
    assert card.display_name == "Jürgen Müller"
    assert card.organization is not None and card.organization.name == "Bäckerei Größe"
    assert [(p.raw, p.e164, p.label) for p in card.phones] == [
        ("(0221) 987-6543", "+492219876543", "Telefon")
    ]
    assert by_phone.display_name == "Ödön Weiß"
    assert by_phone.organization == card.organization


async def test_import_ten_thousand_rows(db: SessionFactory) -> None:
    rows = [
        RawRow(
            n + 2,
            name=f"Person {n}",
            organization=f"Firma {n % 100}",
            phones=(("Telefon", f"030 {1000000 + n}"),),
            emails=(("E-Mail", f"p{n}@example.com"),),
        )
        for n in range(10_000)
    ]
    rows.append(RawRow(10_002, name="Late Twin", phones=(("Telefon", "+49 30 1000000"),)))
    async with db.begin() as session:
        report = await import_contacts(session, rows, REGION)
        count = await session.scalar(select(func.count()).select_from(Contact))
    assert (report.created, count, report.errors) == (10_000, 10_000, ())
    assert [d.row for d in report.duplicates] == [10_002]


async def test_too_long_values_are_row_errors(db: SessionFactory) -> None:
    rows = [
        RawRow(2, name="Long Phone", phones=(("Telefon", "030 " + "1" * 70),)),
        RawRow(3, name="L" * 300, emails=(("Mail", "long@example.com"),)),
    ]
    async with db.begin() as session:
        report = await import_contacts(session, rows, REGION)
        (card,) = await search_contacts(session, "long@", REGION)
    assert report.errors == (
        RowError(2, "Telefon '030 11111111111111111111111111'... is too long"),
    )
    assert report.created == 1 and card.display_name == "L" * 200


@pytest.mark.parametrize(
    ("title", "field"),
    [
        ("Name", "name"),
        ("full_name", "name"),
        ("Vorname", "first_name"),
        ("First Name", "first_name"),
        ("SURNAME", "last_name"),
        ("Nachname", "last_name"),
        ("Organisation", "organization"),
        ("Firma", "organization"),
        ("Unternehmen", "organization"),
        ("Tel", "phones"),
        ("Telefon 2", "phones"),
        ("Mobile Phone", "phones"),
        ("Handy", "phones"),
        ("cell", "phones"),
        ("e_mail", "emails"),
        ("E-Mail-Adresse", "emails"),
        ("Mail", "emails"),
    ],
)
def test_header_names(title: str, field: str) -> None:
    (row,) = read_rows(f"{title},Fax\nx,y\n".encode(), "contacts.csv")
    value = getattr(row, field)
    assert value == ((title, "x"),) if field in ("phones", "emails") else value == "x"
