"""Contacts import: reading CSV/XLSX files, and importing them into a real SQLite database."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from core.contacts import ContactInput, EmailInput, PhoneInput, create_contact, get_contact
from core.db import SessionFactory, create_engine, session_factory
from core.dbthread import DbWorker
from core.errors import InvalidInput
from core.export import export_table, to_csv, to_xlsx
from core.importer import (
    BATCH,
    ImportOptions,
    RawRow,
    RowDuplicate,
    RowWarning,
    import_rows,
    read_packed,
    read_rows,
)
from core.migrate import upgrade
from core.models import Contact
from core.search import search_contacts
from crmcomms.cli import main
from crmcomms.config import Settings
from crmcomms.mail.parsers import restarting_parser_pool
from tests.conftest import AgentFactory

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


@pytest.fixture
async def worker(db: SessionFactory) -> AsyncIterator[DbWorker]:
    """The database worker on the test database (imports store through it)."""
    dbw = DbWorker(db.kw["bind"])
    yield dbw
    await dbw.close()


def opts(**kwargs: bool) -> ImportOptions:
    return ImportOptions(REGION, **kwargs)


@pytest.fixture(scope="module")
def parsers() -> Iterator[Executor]:
    """The daemon's parser processes, where the API prepares an import's rows."""
    pool = restarting_parser_pool(1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(params=["thread", "process"])
def executor(request: pytest.FixtureRequest) -> Executor | None:
    """Where import_rows prepares its batches: a thread (CLI) or the parser processes (API)."""
    return request.getfixturevalue("parsers") if request.param == "process" else None


async def test_an_unreadable_file_says_so_from_a_parser_process(parsers: Executor) -> None:
    # the error crosses the process boundary with its field (InvalidInput pickles by fields)
    future = parsers.submit(read_rows, b"", "empty.csv")
    with pytest.raises(InvalidInput) as caught:
        future.result(timeout=60)
    assert caught.value.field == "file" and "empty" in caught.value.message


async def test_a_file_packed_in_a_parser_process_imports_as_its_rows_do(
    db: SessionFactory, worker: DbWorker, executor: Executor | None
) -> None:
    # the API's path: the file is read (and its batches pickled) where the batches
    # are then prepared; the daemon holds a few bytes objects meanwhile
    lines = "".join(f"Person {i},+49 40 7{i:08d}\n" for i in range(2 * BATCH + 7))
    data = ("Name,Phone\n" + lines).encode()
    if executor is None:
        packed = read_packed(data, "many.csv")
    else:
        packed = executor.submit(read_packed, data, "many.csv").result(timeout=60)
    assert packed.total == 2 * BATCH + 7
    assert [size for size, _ in packed.batches] == [BATCH, BATCH, 7]
    seen: list[int] = []
    report = await import_rows(worker, packed, opts(), lambda p: seen.append(p.done), executor)
    assert seen == [BATCH, 2 * BATCH, 2 * BATCH + 7]
    assert (report.rows, report.created, report.errors) == (2 * BATCH + 7, 2 * BATCH + 7, ())
    names = await _ids_by_name(db)
    assert {"Person 0", f"Person {2 * BATCH + 6}"} <= set(names) and len(names) == 2 * BATCH + 7


async def test_bad_rows_never_lose_a_person(
    db: SessionFactory, worker: DbWorker, executor: Executor | None
) -> None:
    async with db.begin() as session:
        existing = await create_contact(
            session,
            ContactInput(display_name="Erika Alt", phones=(PhoneInput(raw="030 9999999"),)),
            REGION,
        )
    report = await import_rows(worker, read("bad_rows.csv"), opts(), executor=executor)
    assert report.errors == ()
    assert report.warnings == (
        RowWarning(3, "email: invalid e-mail address 'not-an-address': left out"),
        RowWarning(4, "phone '030 12' is not a valid number for DE: stored as written"),
        RowWarning(8, "shares +49301111111 with row 2: imported"),
        RowWarning(10, f"shares +49309999999 with contact {existing.id} (Erika Alt): imported"),
        RowWarning(14, "phone 'call me maybe' has no phone number: left out"),
    )
    good_id = (await _ids_by_name(db))["Good One"]
    assert report.duplicates == (
        RowDuplicate(9, good_id, "e-mail good@example.com already in row 2 of this file: skipped"),
    )
    assert (report.created, report.rows) == (10, 11)
    names = sorted(await _ids_by_name(db))
    assert names == sorted(
        ["Erika Alt", "Good One", "Bad Mail", "Bad Phone", "Multi\nLine", "Repeat Phone",
         "Existing", "Only Company Ltd", "No Name", "0176 3333333", "Letters"]
    )  # fmt: skip
    async with db() as session:
        (bad_phone,) = await search_contacts(session, "Bad Phone", REGION)
    assert [(p.raw, p.e164) for p in bad_phone.phones] == [("030 12", None)]


async def test_a_shared_number_is_no_duplicate(db: SessionFactory, worker: DbWorker) -> None:
    data = (
        b"Name;Telefon;E-Mail\n"
        b"Anna Alt;030 5556667;anna@firma.example\n"
        b"Bert Berg;(030) 555 66 67;bert@firma.example\n"
        b"Carla Cet;7788990;carla@example.com\n"
    )
    report = await import_rows(worker, read_rows(data, "x.csv"), opts())
    assert report.created == 3 and report.duplicates == ()
    assert report.warnings == (
        RowWarning(3, "shares +49305556667 with row 2: imported"),
        RowWarning(4, "Telefon '7788990' is not a valid number for DE: stored as written"),
    )
    again = await import_rows(worker, read_rows(data, "x.csv"), opts())
    assert (again.created, len(again.duplicates)) == (0, 3)
    async with db() as session:
        (carla,) = await search_contacts(session, "7788990", REGION)
        shared = await search_contacts(session, "+49 30 5556667", REGION)
    assert carla.display_name == "Carla Cet"
    assert sorted(c.display_name for c in shared) == ["Anna Alt", "Bert Berg"]


async def test_same_name_and_number_is_a_duplicate(db: SessionFactory, worker: DbWorker) -> None:
    rows = [
        RawRow(2, name="Dora Diaz", phones=(("Tel", "030 7654321"),)),
        RawRow(3, name="dora  DIAZ", phones=(("Tel", "+49 30 7654321"),)),
    ]
    report = await import_rows(worker, rows, opts())
    assert report.created == 1
    assert [d.reason for d in report.duplicates] == [
        "name and +49307654321 already in row 2 of this file: skipped"
    ]


async def test_dry_run_stores_nothing(db: SessionFactory, worker: DbWorker) -> None:
    report = await import_rows(worker, read("bad_rows.csv"), opts(dry_run=True))
    assert (report.created, report.dry_run, len(report.warnings)) == (10, True, 4)
    assert report.duplicates[0].contact_id is None
    assert await _ids_by_name(db) == {}


async def test_update_merges_by_email(db: SessionFactory, worker: DbWorker) -> None:
    async with db.begin() as session:
        old = await create_contact(
            session,
            ContactInput(
                first_name="Anna",
                display_name="Anna Schmidt",
                emails=(EmailInput(address="anna@acme.example"),),
                phones=(PhoneInput(raw="030 1234567"),),
            ),
            REGION,
        )
    rows = [
        RawRow(2, first_name="Annette", last_name="Schmidt", organization="Acme GmbH",
               phones=(("Mobil", "0171 1234567"), ("Tel", "+49 30 1234567")),
               emails=(("Mail", "ANNA@acme.example"), ("Mail 2", "a.s@acme.example"))),
        RawRow(3, name="Anna Schmidt", emails=(("Mail", "a.s@acme.example"),)),
    ]  # fmt: skip
    skipped = await import_rows(worker, rows, opts())
    assert (skipped.created, skipped.updated, len(skipped.duplicates)) == (0, 0, 2)
    report = await import_rows(worker, rows, opts(update=True))
    assert (report.created, report.updated) == (0, 1)
    assert all(d.merged and d.contact_id == old.id for d in report.duplicates)
    async with db() as session:
        card = await get_contact(session, old.id)
    assert (card.first_name, card.last_name, card.display_name) == (
        "Anna",
        "Schmidt",
        "Anna Schmidt",
    )
    assert card.organization is not None and card.organization.name == "Acme GmbH"
    assert [p.e164 for p in card.phones] == ["+49301234567", "+491711234567"]
    assert [e.address for e in card.emails] == ["anna@acme.example", "a.s@acme.example"]


@pytest.mark.parametrize(
    "name", ["comma_utf8.csv", "semicolon_bom.csv", "tab_cp1252.csv", "pipe_mixed.csv"]
)
async def test_import_each_file_then_again_finds_all_duplicates(
    db: SessionFactory, worker: DbWorker, name: str
) -> None:
    rows = read(name)
    first = await import_rows(worker, rows, opts())
    again = await import_rows(worker, rows, opts())
    async with db() as session:
        count = await session.scalar(select(func.count()).select_from(Contact))
    assert (first.created, first.errors, first.duplicates) == (len(rows), (), ())
    assert (again.created, len(again.duplicates)) == (0, len(rows))
    assert count == len(rows)


async def test_imported_contacts_are_complete(db: SessionFactory, worker: DbWorker) -> None:
    await import_rows(worker, read("semicolon_bom.csv"), opts())
    async with db() as session:
        (card,) = await search_contacts(session, "jürgen", REGION)
        (by_phone,) = await search_contacts(session, "+4915123456789", REGION)
    assert card.display_name == "Jürgen Müller"
    assert card.organization is not None and card.organization.name == "Bäckerei Größe"
    assert [(p.raw, p.e164, p.label) for p in card.phones] == [
        ("(0221) 987-6543", "+492219876543", "Telefon")
    ]
    assert by_phone.display_name == "Ödön Weiß"
    assert by_phone.organization == card.organization


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_import_ten_thousand_rows_in_batches(db: SessionFactory, worker: DbWorker) -> None:
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
    rows.append(RawRow(10_002, name="Person 0", phones=(("Telefon", "+49 30 1000000"),)))
    seen: list[int] = []
    report = await import_rows(worker, rows, opts(), lambda p: seen.append(p.done))
    async with db() as session:
        count = await session.scalar(select(func.count()).select_from(Contact))
    assert (report.created, count, report.errors) == (10_000, 10_000, ())
    assert [d.row for d in report.duplicates] == [10_002]
    assert seen == [*range(BATCH, 10_001, BATCH), 10_001]


async def test_too_long_values_are_left_out(db: SessionFactory, worker: DbWorker) -> None:
    rows = [
        RawRow(2, name="Long Phone", phones=(("Telefon", "030 " + "1" * 70),)),
        RawRow(3, name="L" * 300, emails=(("Mail", "long@example.com"),)),
    ]
    report = await import_rows(worker, rows, opts())
    assert report.warnings == (
        RowWarning(2, "Telefon '030 11111111111111111111111111' is too long: left out"),
    )
    assert report.created == 2
    async with db() as session:
        (card,) = await search_contacts(session, "long@", REGION)
    assert card.display_name == "L" * 200


def test_charsets() -> None:
    text = (
        "Name;Phone;Company\n"
        "Владимир Петров;030 1234567;ООО Ромашка\n"
        "Анна Смирнова;030 7654321;Газпром\n"
        "Сергей Кузнецов;040 1234;Почта России\n"
    )
    for encoding in ("cp1251", "koi8_r", "utf-16"):  # utf-16: Excel's "Unicode text"
        rows = read_rows(text.encode(encoding), "contacts.txt")
        assert [r.organization for r in rows] == ["ООО Ромашка", "Газпром", "Почта России"]


async def test_export_reimports_identically(
    db: SessionFactory, worker: DbWorker, tmp_path: Path
) -> None:
    for name in ("comma_utf8.csv", "semicolon_bom.csv", "tab_cp1252.csv", "pipe_mixed.csv"):
        await import_rows(worker, read(name), opts())
    await import_rows(worker, read("bad_rows.csv"), opts())
    table = await worker.read(export_table)
    before = await _cards(db)
    for data, filename in ((to_csv(table), "out.csv"), (to_xlsx(table), "out.xlsx")):
        url = f"sqlite+aiosqlite:///{tmp_path / filename}.sqlite3"
        engine = create_engine(url)
        await upgrade(engine)
        fresh = DbWorker(engine)
        report = await import_rows(fresh, read_rows(data, filename), opts())
        await fresh.close()
        assert report.duplicates == () and report.errors == ()
        assert await _cards(session_factory(engine)) == before
        await engine.dispose()


async def _cards(db: SessionFactory) -> list[tuple[object, ...]]:
    async with db() as session:
        cards = await search_contacts(session, "", REGION, limit=500)
    return sorted(
        (
            c.display_name,
            c.first_name,
            c.last_name,
            c.organization.name if c.organization else None,
            tuple((p.raw, p.e164, p.label) for p in c.phones),
            tuple((e.address, e.label) for e in c.emails),
        )
        for c in cards
    )


async def _ids_by_name(db: SessionFactory) -> dict[str, int]:
    async with db.begin() as session:
        rows = await session.execute(select(Contact.display_name, Contact.id))
        return {name: cid for name, cid in rows}


def test_label_columns_pair_with_their_values() -> None:
    data = (
        b"Name,Phone 1 - Type,Phone 1 - Value,E-mail 1 - Value,E-mail 1 - Type\n"
        b"A,Work,030 1,a@b.cd,\n"
    )
    (row,) = read_rows(data, "google.csv")
    assert row.phones == (("Work", "030 1"),) and row.emails == (("", "a@b.cd"),)


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


# --- the command and the web upload ---------------------------------------------


def test_import_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], migrated: Settings
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[general]\ndata_dir = "{migrated.general.data_dir}"\n')
    bad = str(FIXTURES / "bad_rows.csv")
    c = ("--config", str(config))
    assert main(["contacts", "import", bad, *c, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would import 10 new contact(s)" in out and "dry run: nothing stored" in out
    assert main(["contacts", "import", bad, *c, "--strict"]) == 1  # it had warnings
    out = capsys.readouterr().out
    assert "row 4: warning: phone '030 12' is not a valid number for DE" in out
    assert "imported 10 new contact(s)" in out
    assert main(["contacts", "import", bad, *c]) == 0
    assert "0 new contact(s)" in capsys.readouterr().out
    assert main(["contacts", "export", str(tmp_path / "all.xlsx"), *c]) == 0
    assert "10 contact(s) written" in capsys.readouterr().out
    assert main(["contacts", "import", str(tmp_path / "all.xlsx"), *c, "--strict"]) == 1
    out = capsys.readouterr().out
    assert "imported 0 new contact(s)" in out and "10 duplicate(s)" in out


async def test_web_import(app_client: TestClient[Any, Any], make_agent: AgentFactory) -> None:
    _, token = await make_agent("sue", role="supervisor")
    auth = {"Authorization": f"Bearer {token}"}
    data = (FIXTURES / "bad_rows.csv").read_bytes()
    resp = await app_client.post(
        "/api/contacts/import?filename=x.csv&dry_run=1", data=data, headers=auth
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["created"], report["dry_run"], len(report["warnings"])) == (10, True, 4)
    resp = await app_client.post("/api/contacts/import?filename=x.csv", data=data, headers=auth)
    assert (await resp.json())["created"] == 10
    resp = await app_client.get("/api/contacts/imports", headers=auth)
    assert (await resp.json()) == {"imports": []}
