"""Contact services: create, read, update, delete, merge, and duplicate detection.

Search is in :mod:`core.search`.

Write services validate, write and flush; the caller owns the transaction and
commits (``async with sessions.begin() as session: ...``), as everywhere in core.
Phones are stored as entered (``raw``) with their E.164 form and reversed
digits (see :mod:`core.phones`); e-mail addresses stripped and lower-cased.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.errors import InvalidInput, NotFound
from core.lookup import ContactCard, load_cards
from core.models import Contact, EmailAddress, Organization, PhoneNumber
from core.phones import NormalisedNumber, normalise, rev_digits
from core.search import search_key

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_CHUNK = 500


class PhoneInput(BaseModel):
    """A phone number as entered, with an optional label ("mobile", "work"...)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    raw: str = Field(max_length=64)
    label: str = Field(default="", max_length=40)


class EmailInput(BaseModel):
    """An e-mail address as entered, with an optional label."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    address: str = Field(max_length=320)
    label: str = Field(default="", max_length=40)


class ContactInput(BaseModel):
    """What a user gives for a contact; ``display_name`` is derived when missing."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    display_name: str | None = Field(default=None, max_length=200)
    organization: str | None = Field(default=None, max_length=200)
    phones: tuple[PhoneInput, ...] = ()
    emails: tuple[EmailInput, ...] = ()
    tags: tuple[Annotated[str, Field(min_length=1, max_length=40)], ...] | None = Field(
        default=None, max_length=30
    )  # None: keep the contact's tags as they are


def contact_input_from_json(data: Any) -> ContactInput:
    """Validate decoded JSON into a ContactInput; InvalidInput names the bad field."""
    try:
        return ContactInput.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidInput(field, error["msg"]) from exc


@dataclass(frozen=True, slots=True)
class PreparedContact:
    """A validated contact, ready to store: numbers normalised, addresses lower-cased."""

    first_name: str
    last_name: str
    display_name: str
    organization: str | None
    phones: tuple[tuple[NormalisedNumber, str], ...]
    emails: tuple[tuple[str, str], ...]
    tags: tuple[str, ...] | None = None

    def search_key(self, tags: Sequence[str] = ()) -> str:
        """The folded names, organization and ``tags`` (``contacts.search_key``)."""
        names = (self.display_name, self.first_name, self.last_name, self.organization)
        return search_key((*names, *(self.tags if self.tags is not None else tags)))


@dataclass(frozen=True, slots=True)
class Owner:
    """The contact a phone number or e-mail address already belongs to."""

    contact_id: int
    display_name: str


def prepare_contact(data: ContactInput, region: str) -> PreparedContact:
    """Validate and normalise ``data``; InvalidInput names the first bad field."""
    phones = tuple(
        (_valid_phone(p.raw, region, f"phones.{i}.raw"), p.label) for i, p in enumerate(data.phones)
    )
    emails = tuple(
        (valid_email(e.address, f"emails.{i}.address"), e.label) for i, e in enumerate(data.emails)
    )
    organization = " ".join((data.organization or "").split()) or None
    display = data.display_name or " ".join(filter(None, (data.first_name, data.last_name)))
    display = display or organization or (emails[0][0] if emails else "")
    display = display or (phones[0][0].raw if phones else "")
    if not display:
        raise InvalidInput("display_name", "a contact needs a name, company, phone or e-mail")
    tags = (
        None if data.tags is None else tuple(dict.fromkeys(" ".join(t.split()) for t in data.tags))
    )
    return PreparedContact(
        data.first_name, data.last_name, display, organization, phones, emails, tags
    )


def valid_email(address: str, field: str) -> str:
    """The address stripped and lower-cased; InvalidInput(field) when it is not one."""
    cleaned = address.strip().lower()
    if len(cleaned) > 320 or not _EMAIL.fullmatch(cleaned):
        raise InvalidInput(field, f"invalid e-mail address {address.strip()!r}")
    return cleaned


def _valid_phone(raw: str, region: str, field: str) -> NormalisedNumber:
    number = normalise(raw, region)
    if number is None or number.kind == "raw":
        raise InvalidInput(field, f"{raw.strip()!r} is not a valid phone number for {region}")
    return number


def phone_rows(prepared: PreparedContact) -> list[PhoneNumber]:
    """New PhoneNumber rows for a prepared contact."""
    return [
        PhoneNumber(raw=n.raw, e164=n.e164, rev_digits=rev_digits(n), label=label)
        for n, label in prepared.phones
    ]


def email_rows(prepared: PreparedContact) -> list[EmailAddress]:
    """New EmailAddress rows for a prepared contact."""
    return [EmailAddress(address=address, label=label) for address, label in prepared.emails]


async def create_contact(session: AsyncSession, data: ContactInput, region: str) -> ContactCard:
    """Store a new contact (its organization got or created by name) and return its card."""
    prepared = prepare_contact(data, region)
    contact = Contact(phones=phone_rows(prepared), emails=email_rows(prepared))
    await _apply(session, contact, prepared)
    session.add(contact)
    await session.flush()
    return await get_contact(session, contact.id)


async def get_contact(session: AsyncSession, contact_id: int) -> ContactCard:
    """The card of contact ``contact_id``; NotFound if there is none."""
    cards = await load_cards(session, [contact_id])
    if not cards:
        raise NotFound(f"contact {contact_id} not found")
    return cards[0]


async def update_contact(
    session: AsyncSession, contact_id: int, data: ContactInput, region: str
) -> ContactCard:
    """Replace a contact's names, organization, phones and e-mails; NotFound if missing."""
    prepared = prepare_contact(data, region)
    query = (
        select(Contact)
        .where(Contact.id == contact_id)
        .options(selectinload(Contact.phones), selectinload(Contact.emails))
    )
    contact = await session.scalar(query)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    await _apply(session, contact, prepared)
    contact.phones = phone_rows(prepared)
    contact.emails = email_rows(prepared)
    await session.flush()
    return await get_contact(session, contact_id)


async def set_tags(session: AsyncSession, contact_id: int, tags: Iterable[str]) -> ContactCard:
    """Replace a contact's tags (whitespace collapsed, each once); NotFound if missing."""
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    card = await get_contact(session, contact_id)
    contact.tags = list(dict.fromkeys(" ".join(tag.split()) for tag in tags))
    organization = card.organization.name if card.organization else None
    names = (card.display_name, card.first_name, card.last_name, organization)
    contact.search_key = search_key((*names, *contact.tags))
    await session.flush()
    return await get_contact(session, contact_id)


async def delete_contact(session: AsyncSession, contact_id: int) -> None:
    """Delete a contact with its phones, e-mails, notes; NotFound if missing."""
    result = cast(
        "CursorResult[Any]", await session.execute(delete(Contact).where(Contact.id == contact_id))
    )
    if not result.rowcount:
        raise NotFound(f"contact {contact_id} not found")


async def _apply(session: AsyncSession, contact: Contact, prepared: PreparedContact) -> None:
    contact.first_name = prepared.first_name
    contact.last_name = prepared.last_name
    contact.display_name = prepared.display_name
    if prepared.tags is not None:
        contact.tags = list(prepared.tags)
    contact.search_key = prepared.search_key(contact.tags or ())
    names = {prepared.organization} if prepared.organization else set()
    contact.organization_id = (await organization_ids(session, names)).get(
        prepared.organization or ""
    )


async def organization_ids(session: AsyncSession, names: Iterable[str]) -> dict[str, int]:
    """Ids of the organizations named ``names``, created when missing (flushed, not committed)."""
    wanted = sorted(set(names))
    ids: dict[str, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = select(Organization.name, Organization.id).where(Organization.name.in_(chunk))
        for name, org_id in await session.execute(query.order_by(Organization.id.desc())):
            ids[name] = org_id
    missing = [Organization(name=name) for name in wanted if name not in ids]
    session.add_all(missing)
    await session.flush()
    return ids | {org.name: org.id for org in missing}


async def find_owners(
    session: AsyncSession, phone_keys: Iterable[str], emails: Iterable[str]
) -> dict[str, Owner]:
    """Who already has these numbers or addresses, keyed by the given key.

    A phone key is an E.164 number (``+49...``) or, for numbers without one,
    their digits. E-mail keys are lower-case addresses. With several owners
    the lowest contact id wins.
    """
    keys = sorted(set(phone_keys))
    e164s = [k for k in keys if k.startswith("+")]
    reversed_digits = {k[::-1]: k for k in keys if not k.startswith("+")}
    owners: dict[str, Owner] = {}
    for column, values, key_of in (
        (PhoneNumber.e164, e164s, str),
        (PhoneNumber.rev_digits, list(reversed_digits), reversed_digits.__getitem__),
    ):
        for value, owner in await _owners_of(session, column, PhoneNumber.contact_id, values):
            owners.setdefault(key_of(value), owner)
    addresses = sorted(set(emails))
    for value, owner in await _owners_of(
        session, EmailAddress.address, EmailAddress.contact_id, addresses
    ):
        owners.setdefault(value, owner)
    return owners


async def _owners_of(
    session: AsyncSession, column: Any, contact_column: Any, values: Sequence[str]
) -> list[tuple[str, Owner]]:
    found: list[tuple[str, Owner]] = []
    for start in range(0, len(values), _CHUNK):
        query = (
            select(column, Contact.id, Contact.display_name)
            .join(Contact, Contact.id == contact_column)
            .where(column.in_(values[start : start + _CHUNK]))
            .order_by(Contact.id)
        )
        found += [(value, Owner(cid, name)) for value, cid, name in await session.execute(query)]
    return found


async def find_duplicates(
    session: AsyncSession, phones_e164_or_digits: Iterable[str], emails: Iterable[str]
) -> list[int]:
    """Ids of the contacts that already have one of these numbers or e-mail addresses."""
    lowered = [address.strip().lower() for address in emails]
    owners = await find_owners(session, phones_e164_or_digits, lowered)
    return sorted({owner.contact_id for owner in owners.values()})
