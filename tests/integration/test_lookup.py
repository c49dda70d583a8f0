"""Caller lookup against a real SQLite database built by the migrations."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from core.contacts import ContactInput, PhoneInput, create_contact
from core.db import SessionFactory
from core.lookup import lookup_contacts, matching_phones
from core.models import PhoneNumber
from core.phones import normalise, rev_digits

REGION = "DE"
SUFFIX = 8

# name -> numbers as entered (all normalised with region DE)
CONTACTS: dict[str, list[str]] = {
    "Anna Schmidt": ["030 1234567", "0171 1234567"],
    "Bernd Meier": ["+49 89 12345678"],  # the switchboard of Bernd's and Carla's company
    "Carla Zimmer": ["089 12345678 ext. 12"],
    "Frank Smith": ["+44 20 7946 0958"],
    "Emil Intern": ["101"],
    "Gina Doppel": ["0151 23456789", "+49 (0)151 23456789"],  # one number entered twice
}
# French numbers written nationally under region DE: only the last digits match the caller
ODD: dict[str, str] = {"Dora Dupont": "01 42 68 53 00", "Hans Huber": "1 42 68 53 00"}


@pytest.fixture
async def ids(db: SessionFactory) -> dict[str, int]:
    created: dict[str, int] = {}
    async with db.begin() as session:
        for name, numbers in CONTACTS.items():
            data = ContactInput(display_name=name, phones=tuple(PhoneInput(raw=n) for n in numbers))
            created[name] = (await create_contact(session, data, REGION)).id
        for name, raw in ODD.items():
            created[name] = await _add_raw_number(session, name, raw)
    return created


async def _add_raw_number(session: Any, name: str, raw: str) -> int:
    """Store a number the way legacy data has it (not valid, so kept as raw digits)."""
    card = await create_contact(session, ContactInput(display_name=name), REGION)
    number = normalise(raw, REGION)
    assert number is not None and number.kind == "raw"
    session.add(PhoneNumber(contact_id=card.id, raw=raw, e164=None, rev_digits=rev_digits(number)))
    await session.flush()
    return card.id


LOOKUPS: list[tuple[str, list[str], str]] = [
    ("+49301234567", ["Anna Schmidt"], "exact"),
    ("0301234567", ["Anna Schmidt"], "exact"),
    ("0049 30 1234567", ["Anna Schmidt"], "exact"),
    ("(030) 123-4567", ["Anna Schmidt"], "exact"),
    ("+491711234567", ["Anna Schmidt"], "exact"),
    ("+498912345678", ["Bernd Meier", "Carla Zimmer"], "exact"),
    ("+442079460958", ["Frank Smith"], "exact"),
    ("101", ["Emil Intern"], "exact"),
    ("+4915123456789", ["Gina Doppel"], "exact"),
    ("+33142685300", ["Dora Dupont", "Hans Huber"], "suffix"),
    ("0033 1 42 68 53 00", ["Dora Dupont", "Hans Huber"], "suffix"),
    ("+49 40 9999999", [], "none"),
    ("102", [], "none"),
    ("+4930 7654321", [], "none"),
    # a valid number never matches another valid one by its last digits (Bernd: 089 12345678)
    ("+49 40 12345678", [], "none"),
    ("030 12345678", [], "none"),
]


@pytest.mark.parametrize(("number", "names", "kind"), LOOKUPS)
async def test_lookup(
    db: SessionFactory, ids: dict[str, int], number: str, names: list[str], kind: str
) -> None:
    async with db.begin() as session:
        result = await lookup_contacts(session, number, REGION, SUFFIX)
    assert [card.id for card in result.matches] == [ids[name] for name in names]
    assert result.match_kind == kind
    assert result.number is not None


@pytest.mark.parametrize("number", ["anonymous", "<unknown>", "", "  ", "restricted"])
async def test_withheld_numbers_match_nobody(
    db: SessionFactory, ids: dict[str, int], number: str
) -> None:
    async with db.begin() as session:
        result = await lookup_contacts(session, number, REGION, SUFFIX)
    assert (result.number, result.matches, result.match_kind) == (None, (), "none")


async def test_suffix_can_be_disabled(db: SessionFactory, ids: dict[str, int]) -> None:
    async with db.begin() as session:
        result = await lookup_contacts(session, "+33142685300", REGION, 0)
    assert (result.matches, result.match_kind) == ((), "none")


async def test_suffix_longer_than_the_number_is_skipped(
    db: SessionFactory, ids: dict[str, int]
) -> None:
    async with db.begin() as session:
        result = await lookup_contacts(session, "+33142685300", REGION, 15)
    assert result.match_kind == "none"


async def test_exact_match_wins_over_suffix(db: SessionFactory, ids: dict[str, int]) -> None:
    # Frank has +44 20 7946 0958; a legacy row ending in the same 8 digits is not offered.
    async with db.begin() as session:
        await _add_raw_number(session, "Legacy Frank", "020 7946 0958")
        result = await lookup_contacts(session, "+442079460958", REGION, SUFFIX)
    assert [c.display_name for c in result.matches] == ["Frank Smith"]


async def test_card_json(db: SessionFactory, ids: dict[str, int]) -> None:
    async with db.begin() as session:
        result = await lookup_contacts(session, "030 1234567", REGION, SUFFIX)
    card = result.to_json()["matches"][0]
    assert result.to_json()["number"] == "+49301234567"
    assert card["id"] == ids["Anna Schmidt"]
    assert card["organization"] is None and card["emails"] == []
    assert [(p["raw"], p["e164"]) for p in card["phones"]] == [
        ("030 1234567", "+49301234567"),
        ("0171 1234567", "+491711234567"),
    ]


async def test_lookup_is_one_statement(db: SessionFactory, ids: dict[str, int]) -> None:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    async with db.begin() as session:
        connection = await session.connection()
        if connection.dialect.name == "sqlite":  # the lookup bypasses SQLAlchemy's events there
            driver: Any = (await connection.get_raw_connection()).driver_connection
            await driver.set_trace_callback(statements.append)
        else:
            event.listen(connection.sync_engine, "before_cursor_execute", record)
        result = await lookup_contacts(session, "+33142685300", REGION, SUFFIX)
    assert len(result.matches) == 2
    assert len(statements) == 1
    assert "'suffix'" in statements[0]


async def test_lookup_sees_pending_changes_of_its_session(db: SessionFactory) -> None:
    number = normalise("040 123456", REGION)
    assert number is not None
    async with db.begin() as session:
        card = await create_contact(session, ContactInput(display_name="Ida"), REGION)
        session.add(PhoneNumber(contact_id=card.id, raw=number.raw, e164=number.e164,
                                rev_digits=rev_digits(number)))  # fmt: skip
        result = await lookup_contacts(session, "+4940123456", REGION, SUFFIX)
    assert [c.id for c in result.matches] == [card.id]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # SQLite's query plan
async def test_suffix_branch_walks_the_digits_range(
    db: SessionFactory, ids: dict[str, int]
) -> None:
    # not the e164 index for "no valid E.164" (it holds every odd number: 7 ms at a million)
    sql, params = matching_phones(normalise("+33142685300", REGION), SUFFIX)  # type: ignore[arg-type]
    async with db() as session:
        conn = await session.connection()
        plan = " ".join(
            str(row) for row in await conn.execute(text("EXPLAIN QUERY PLAN " + sql), params)
        )
    assert "ix_phone_numbers_rev_digits (rev_digits>? AND rev_digits<?)" in plan
