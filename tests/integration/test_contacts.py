"""Contact services (CRUD, search, duplicates) against a real SQLite database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.contacts import (
    ContactInput,
    EmailInput,
    PhoneInput,
    contact_input_from_json,
    create_contact,
    delete_contact,
    find_duplicates,
    get_contact,
    update_contact,
)
from core.db import SessionFactory
from core.errors import InvalidInput, NotFound
from core.merge import merge_contacts
from core.models import EmailAddress, Note, Organization, PhoneNumber
from core.search import search_contacts

REGION = "DE"


def anna() -> ContactInput:
    return ContactInput(
        first_name="Anna",
        last_name="Schmidt",
        organization="Acme  GmbH",
        phones=(PhoneInput(raw="030 1234567", label="work"), PhoneInput(raw="0171 1234567")),
        emails=(EmailInput(address=" Anna.Schmidt@Acme.Example ", label="work"),),
    )


async def test_create_and_get(db: SessionFactory) -> None:
    async with db.begin() as session:
        card = await create_contact(session, anna(), REGION)
    async with db.begin() as session:
        assert await get_contact(session, card.id) == card
    assert card.display_name == "Anna Schmidt"
    assert card.organization is not None and card.organization.name == "Acme GmbH"
    assert [(p.raw, p.e164, p.label) for p in card.phones] == [
        ("030 1234567", "+49301234567", "work"),
        ("0171 1234567", "+491711234567", ""),
    ]
    assert [(e.address, e.label) for e in card.emails] == [("anna.schmidt@acme.example", "work")]


async def test_numbers_are_stored_with_reversed_digits(db: SessionFactory) -> None:
    async with db.begin() as session:
        await create_contact(session, anna(), REGION)
        rows = (await session.scalars(select(PhoneNumber.rev_digits))).all()
    assert sorted(rows) == ["76543210394", "765432117194"]


async def test_organization_is_shared_by_name(db: SessionFactory) -> None:
    async with db.begin() as session:
        first = await create_contact(session, anna(), REGION)
        second = await create_contact(
            session, ContactInput(first_name="Bernd", organization="Acme GmbH"), REGION
        )
        count = await session.scalar(select(func.count()).select_from(Organization))
    assert first.organization == second.organization
    assert count == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (ContactInput(first_name="Anna"), "Anna"),
        (ContactInput(organization="Acme GmbH"), "Acme GmbH"),
        (ContactInput(emails=(EmailInput(address="X@Example.com"),)), "x@example.com"),
        (ContactInput(phones=(PhoneInput(raw="030 1234567"),)), "030 1234567"),
        (ContactInput(first_name="A", display_name="Dr. A"), "Dr. A"),
    ],
)
async def test_display_name_is_derived(
    db: SessionFactory, data: ContactInput, expected: str
) -> None:
    async with db.begin() as session:
        assert (await create_contact(session, data, REGION)).display_name == expected


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (ContactInput(), "display_name"),
        (ContactInput(first_name="A", emails=(EmailInput(address="nope"),)), "emails.0.address"),
        (
            ContactInput(
                first_name="A",
                emails=(EmailInput(address="a@b.example"), EmailInput(address="a@b")),
            ),
            "emails.1.address",
        ),
        (ContactInput(first_name="A", phones=(PhoneInput(raw="030 12"),)), "phones.0.raw"),
        (ContactInput(first_name="A", phones=(PhoneInput(raw="anonymous"),)), "phones.0.raw"),
    ],
)
async def test_invalid_input_names_the_field(
    db: SessionFactory, data: ContactInput, field: str
) -> None:
    async with db.begin() as session:
        with pytest.raises(InvalidInput) as info:
            await create_contact(session, data, REGION)
    assert info.value.field == field


def test_contact_input_from_json() -> None:
    data = contact_input_from_json({"first_name": "A", "phones": [{"raw": "101"}]})
    assert data.phones == (PhoneInput(raw="101"),)
    with pytest.raises(InvalidInput) as info:
        contact_input_from_json({"first_name": "A", "emails": [{"label": "x"}]})
    assert info.value.field == "emails.0.address"
    with pytest.raises(InvalidInput):
        contact_input_from_json({"first_name": "A" * 101})


async def test_update_replaces_phones_and_emails(db: SessionFactory) -> None:
    async with db.begin() as session:
        card = await create_contact(session, anna(), REGION)
        new = ContactInput(
            first_name="Anna",
            last_name="Schulz",
            phones=(PhoneInput(raw="+44 20 7946 0958"),),
            emails=(),
        )
        updated = await update_contact(session, card.id, new, REGION)
        phones = await session.scalar(select(func.count()).select_from(PhoneNumber))
        emails = await session.scalar(select(func.count()).select_from(EmailAddress))
    assert updated.id == card.id
    assert (updated.display_name, updated.organization) == ("Anna Schulz", None)
    assert [p.e164 for p in updated.phones] == ["+442079460958"]
    assert (phones, emails) == (1, 0)


async def test_delete(db: SessionFactory) -> None:
    async with db.begin() as session:
        card = await create_contact(session, anna(), REGION)
        await delete_contact(session, card.id)
        phones = await session.scalar(select(func.count()).select_from(PhoneNumber))
        with pytest.raises(NotFound):
            await get_contact(session, card.id)
        with pytest.raises(NotFound):
            await delete_contact(session, card.id)
        with pytest.raises(NotFound):
            await update_contact(session, card.id, anna(), REGION)
    assert phones == 0


@pytest.fixture
async def people(db: SessionFactory) -> dict[str, int]:
    people = [
        anna(),
        ContactInput(
            first_name="Bernd",
            last_name="Meier",
            organization="Bäckerei Müller",
            phones=(PhoneInput(raw="+49 89 12345678"),),
            emails=(EmailInput(address="bernd@baeckerei.example"),),
        ),
        ContactInput(
            first_name="Carla",
            last_name="100%_Zimmer",
            phones=(PhoneInput(raw="+44 20 7946 0958"),),
        ),
    ]
    async with db.begin() as session:
        return {p.first_name: (await create_contact(session, p, REGION)).id for p in people}


@pytest.mark.parametrize(
    ("q", "names"),
    [
        ("anna", ["Anna"]),
        ("ANNA", ["Anna"]),
        ("SCHMIDT", ["Anna"]),
        ("nna schm", ["Anna"]),
        ("acme", ["Anna"]),
        ("Müller", ["Bernd"]),
        ("baeckerei.EXAMPLE", ["Bernd"]),
        ("@", ["Anna", "Bernd"]),
        ("100%", ["Carla"]),
        ("_", ["Carla"]),
        ("030 1234567", ["Anna"]),
        ("+49301234567", ["Anna"]),
        ("0049 (0)30 123-4567", ["Anna"]),
        ("1234567", ["Anna", "Bernd"]),  # any part: two of Anna's numbers (one card), Bernd's
        ("12345678", ["Bernd"]),
        ("0171 123", ["Anna"]),  # the start of a national number, without its trunk prefix
        ("+49 171", ["Anna"]),
        ("89 1234", ["Bernd"]),
        ("4 20 79", ["Carla"]),
        ("mueller", ["Bernd"]),  # umlauts folded both ways
        ("MUELLER", ["Bernd"]),
        ("baeckerei müller", ["Bernd"]),
        ("backerei", ["Bernd"]),  # typed without the umlaut
        ("0044 20 7946 0958", ["Carla"]),
        ("7946 0958", ["Carla"]),
        ("", ["Anna", "Bernd", "Carla"]),
        ("nobody", []),
        ("999 999", []),
    ],
)
async def test_search(db: SessionFactory, people: dict[str, int], q: str, names: list[str]) -> None:
    async with db.begin() as session:
        found = await search_contacts(session, q, REGION)
    assert [card.id for card in found] == [people[name] for name in names]


async def test_search_pages(db: SessionFactory, people: dict[str, int]) -> None:
    async with db.begin() as session:
        page = await search_contacts(session, "", REGION, limit=2, offset=1)
    assert [card.id for card in page] == [people["Bernd"], people["Carla"]]


async def test_find_duplicates(db: SessionFactory, people: dict[str, int]) -> None:
    async with db.begin() as session:
        assert await find_duplicates(session, ["+49301234567"], []) == [people["Anna"]]
        assert await find_duplicates(session, [], ["BERND@baeckerei.example"]) == [people["Bernd"]]
        both = await find_duplicates(session, ["+442079460958"], ["anna.schmidt@acme.example"])
        assert both == sorted([people["Anna"], people["Carla"]])
        assert await find_duplicates(session, ["+4940999999", "101"], ["x@y.example"]) == []


async def test_umlauts_in_the_name_are_found_spelt_out(db: SessionFactory) -> None:
    async with db.begin() as session:
        jurgen = await create_contact(
            session, ContactInput(first_name="Jürgen", last_name="Müller"), REGION
        )
        mueller = await create_contact(
            session, ContactInput(last_name="Mueller", organization="Straße AG"), REGION
        )
    async with db.begin() as session:
        for q, ids in [
            ("müller", [mueller.id, jurgen.id]),
            ("mueller", [mueller.id, jurgen.id]),
            ("MÜLLER", [mueller.id, jurgen.id]),
            ("jurgen", [jurgen.id]),
            ("jürgen müller", [jurgen.id]),
            ("strasse", [mueller.id]),
            ("straße", [mueller.id]),
        ]:
            assert sorted(c.id for c in await search_contacts(session, q, REGION)) == sorted(ids), q


async def test_tags_are_kept_unless_given_and_searchable(db: SessionFactory) -> None:
    async with db.begin() as session:
        card = await create_contact(
            session, ContactInput(last_name="Vogel", tags=("VIP", "Großkunde")), REGION
        )
        assert card.tags == ("VIP", "Großkunde")
        card = await update_contact(session, card.id, ContactInput(last_name="Vogel"), REGION)
        assert card.tags == ("VIP", "Großkunde")
        (found,) = await search_contacts(session, "grosskunde", REGION)
        assert found.id == card.id
        card = await update_contact(
            session, card.id, ContactInput(last_name="Vogel", tags=()), REGION
        )
        assert card.tags == ()


async def test_merge_moves_everything_to_the_contact_kept(
    db: SessionFactory, people: dict[str, int]
) -> None:
    async with db.begin() as session:
        dup = await create_contact(
            session,
            ContactInput(
                last_name="Schmidt",
                organization="Acme GmbH",
                phones=(PhoneInput(raw="+49 30 1234567"), PhoneInput(raw="0160 9876543")),
                emails=(EmailInput(address="anna@home.example"),),
                tags=("VIP",),
            ),
            REGION,
        )
        session.add(Note(contact_id=dup.id, body="prefers mornings"))
    async with db.begin() as session:
        merged = await merge_contacts(session, people["Anna"], dup.id)
    assert merged.display_name == "Anna Schmidt"
    assert [p.raw for p in merged.phones] == ["030 1234567", "0171 1234567", "0160 9876543"]
    assert [e.address for e in merged.emails] == ["anna.schmidt@acme.example", "anna@home.example"]
    assert merged.tags == ("VIP",)
    async with db.begin() as session:
        with pytest.raises(NotFound):
            await get_contact(session, dup.id)
        notes = (await session.scalars(select(Note.contact_id))).all()
        assert notes == [people["Anna"]]
        with pytest.raises(InvalidInput):
            await merge_contacts(session, people["Anna"], people["Anna"])
