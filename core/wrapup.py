"""Wrap-up of a call by an agent: its disposition (outcome code) and whose call it was.

A call is linked to a contact by the lookup only when its number matches exactly
one contact exactly (``call_contacts.match = 'exact'``). When the match is uncertain
(by the last digits, or several contacts share the number) or the caller is
unknown, an agent confirms the contact with :func:`link_contact`, and the link
records how the contact matched: ``exact``, ``suffix``, ``several`` or ``manual``
(a contact the number does not match at all, picked by hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput, NotFound
from core.lookup import LookupResult, lookup_contacts
from core.models import Call, CallContact, Contact, utcnow

#: The disposition codes offered when the configuration names none.
DEFAULT_DISPOSITIONS = (
    "resolved",
    "follow_up",
    "callback_requested",
    "sale",
    "complaint",
    "no_interest",
    "wrong_number",
)


def link_kind(result: LookupResult | None, contact_id: int) -> str:
    """How ``contact_id`` matched the number of ``result`` (see the module)."""
    if result is None or contact_id not in {card.id for card in result.matches}:
        return "manual"
    if result.match_kind == "suffix":
        return "suffix"
    return "several" if len(result.matches) > 1 else "exact"


class Parties(Protocol):
    """Who a call is between (a logged call, or a tracker's snapshot)."""

    @property
    def direction(self) -> str: ...
    @property
    def caller(self) -> str: ...
    @property
    def callee(self) -> str: ...


def customer_number(call: Parties) -> str:
    """The outside party of a logged call: the caller of inbound, the callee of outbound calls."""
    if call.direction == "inbound":
        return call.caller
    if call.direction == "outbound":
        return call.callee
    return ""


async def link_contact(
    session: AsyncSession,
    call_id: int,
    contact_id: int,
    region: str,
    suffix_digits: int,
    *,
    only: bool = True,
) -> str:
    """Link call ``call_id`` to ``contact_id`` as an agent confirmed; how it matched.

    With ``only`` the call's other contacts are unlinked: the agent said who it was.
    """
    call = await _call(session, call_id)
    if await session.get(Contact, contact_id) is None:
        raise NotFound(f"contact {contact_id} not found")
    number = customer_number(call)
    result = await lookup_contacts(session, number, region, suffix_digits) if number else None
    kind = link_kind(result, contact_id)
    if only:
        await session.execute(
            delete(CallContact).where(
                CallContact.call_id == call_id, CallContact.contact_id != contact_id
            )
        )
    link = await session.get(CallContact, (call_id, contact_id))
    if link is None:
        session.add(CallContact(call_id=call_id, contact_id=contact_id, match=kind))
    else:
        link.match = kind
    await session.flush()
    return kind


async def set_disposition(
    session: AsyncSession,
    call_id: int,
    code: str | None,
    allowed: Sequence[str],
    agent_id: int | None,
) -> Call:
    """Set (or with None clear) the disposition of a call; ``code`` must be one of ``allowed``."""
    if code is not None and code not in allowed:
        raise InvalidInput("disposition", f"must be one of {', '.join(allowed)}")
    call = await _call(session, call_id)
    call.disposition = code
    call.disposition_by = agent_id if code is not None else None
    call.disposition_at = utcnow() if code is not None else None
    await session.flush()
    return call


async def disposition_counts(
    session: AsyncSession, since: datetime, until: datetime
) -> dict[str, int]:
    """How many calls started in ``[since, until)`` got each disposition (one GROUP BY)."""
    query = (
        select(Call.disposition, func.count())
        .where(Call.started_at >= since, Call.started_at < until, Call.disposition.is_not(None))
        .group_by(Call.disposition)
        .order_by(func.count().desc(), Call.disposition)
    )
    return {str(code): int(count) for code, count in await session.execute(query)}


async def links_of(session: AsyncSession, call_id: int) -> dict[int, str]:
    """The contacts of a call and how each was matched."""
    query = select(CallContact.contact_id, CallContact.match).where(CallContact.call_id == call_id)
    return {contact_id: match for contact_id, match in await session.execute(query)}


async def _call(session: AsyncSession, call_id: int) -> Call:
    call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call
