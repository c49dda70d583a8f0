"""Merging two duplicate contacts into one.

Everything of the duplicate moves to the contact kept: phone numbers and e-mail
addresses it does not have yet, notes, tasks, the links of calls and e-mails,
and tags; empty names and organization are filled in from the duplicate. Then
the duplicate is deleted (what did not move, being already there, goes with it).
The caller owns the transaction, as everywhere in core.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.contacts import get_contact
from core.errors import InvalidInput, NotFound
from core.lookup import ContactCard
from core.mail.models import EmailContact
from core.models import (
    CallContact,
    Contact,
    EmailAddress,
    Note,
    Organization,
    PhoneNumber,
    Task,
)
from core.search import search_key

# (table, the column that makes a row a duplicate of one the kept contact has)
_LINKS: tuple[tuple[Any, str | None], ...] = (
    (PhoneNumber, "rev_digits"),
    (EmailAddress, "address"),
    (CallContact, "call_id"),
    (EmailContact, "email_id"),
    (Note, None),
    (Task, None),
)


async def merge_contacts(session: AsyncSession, keep_id: int, duplicate_id: int) -> ContactCard:
    """Fold contact ``duplicate_id`` into ``keep_id`` (see the module); the card kept."""
    if keep_id == duplicate_id:
        raise InvalidInput("duplicate", "a contact cannot be merged with itself")
    keep, duplicate = await _contact(session, keep_id), await _contact(session, duplicate_id)
    for model, key in _LINKS:
        await session.execute(_move(model.__table__, key), {"keep": keep_id, "dup": duplicate_id})
    keep.first_name = keep.first_name or duplicate.first_name
    keep.last_name = keep.last_name or duplicate.last_name
    keep.organization_id = keep.organization_id or duplicate.organization_id
    keep.tags = list(dict.fromkeys([*(keep.tags or ()), *(duplicate.tags or ())]))
    organization = await _org_name(session, keep.organization_id)
    names = (keep.display_name, keep.first_name, keep.last_name, organization)
    keep.search_key = search_key((*names, *keep.tags))
    await session.execute(delete(Contact).where(Contact.id == duplicate_id))
    await session.flush()
    session.expunge(duplicate)
    return await get_contact(session, keep_id)


async def _contact(session: AsyncSession, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    return contact


async def _org_name(session: AsyncSession, organization_id: int | None) -> str | None:
    if organization_id is None:
        return None
    return await session.scalar(select(Organization.name).where(Organization.id == organization_id))


def _move(table: Table, key: str | None) -> Any:
    """UPDATE moving the duplicate's rows to the kept contact, but for those it has already."""
    statement = update(table).where(table.c.contact_id == bindparam("dup"))
    if key is not None:
        mine = table.alias("mine")
        statement = statement.where(
            ~exists().where(mine.c.contact_id == bindparam("keep"), mine.c[key] == table.c[key])
        )
    return statement.values(contact_id=bindparam("keep"))
