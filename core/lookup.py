"""Caller lookup: which contacts own a phone number, and their cards.

The number is normalised (:mod:`core.phones`). An exact match on E.164 (or on
all digits, for extensions and unparseable numbers) comes first; only when it
finds nothing, the last ``suffix_digits`` digits are matched, which catches
numbers stored in odd formats. A suffix match never pairs two valid numbers:
a caller with a valid E.164 number is matched by its last digits only against
stored numbers that have none (legacy data typed in an odd format), and a caller
number that does not parse against any stored number. So 089 12345678 never pops
the card of 030 12345678. Suffix matching is a range scan on the index of
``PhoneNumber.rev_digits`` (the digits reversed): the rows whose reversed
digits start with the reversed suffix ``p`` are those in ``[p, p + ':')``,
``':'`` being the character after ``'9'``. Several matches are all returned,
ordered by display name; none is ever picked silently.

A lookup is one SQL statement (match, pick, and load the cards' organization,
phones and e-mails), written as portable SQL text for SQLite and PostgreSQL:
building and cache-keying the equivalent SQLAlchemy construct costs more than
the query itself, and the screen pop waits on it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.phones import NormalisedNumber, display_number, normalise, rev_digits, suffix_key

MatchKind = Literal["exact", "suffix", "none"]

#: Most matches a lookup returns (a switchboard number shared by a whole company).
MAX_MATCHES = 50


@dataclass(frozen=True, slots=True)
class OrganizationRef:
    """The organization shown on a contact card."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class PhoneRef:
    """A phone number on a contact card."""

    id: int
    raw: str
    e164: str | None
    label: str

    def to_json(self, region: str) -> dict[str, Any]:
        """The phone as the API shows it; ``display`` formatted for ``region``."""
        shown = display_number(self.e164 or self.raw, region)
        return {
            "id": self.id,
            "raw": self.raw,
            "e164": self.e164,
            "label": self.label,
            "display": shown,
        }


@dataclass(frozen=True, slots=True)
class EmailRef:
    """An e-mail address on a contact card."""

    id: int
    address: str
    label: str


@dataclass(frozen=True, slots=True)
class ContactCard:
    """What an agent sees of a contact: names, organization, phones and e-mails."""

    id: int
    display_name: str
    first_name: str
    last_name: str
    organization: OrganizationRef | None
    phones: tuple[PhoneRef, ...]
    emails: tuple[EmailRef, ...]
    tags: tuple[str, ...] = ()

    def to_json(self, region: str = "ZZ") -> dict[str, Any]:
        """A JSON-ready dict (the contact objects of the HTTP API and screen pops);
        phone numbers with a ``display`` form for ``region`` (``ZZ``: international)."""
        org = self.organization
        return {
            "id": self.id,
            "display_name": self.display_name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "organization": None if org is None else {"id": org.id, "name": org.name},
            "phones": [p.to_json(region) for p in self.phones],
            "emails": [{"id": e.id, "address": e.address, "label": e.label} for e in self.emails],
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The contacts a number belongs to, and how they were found."""

    number: NormalisedNumber | None
    matches: tuple[ContactCard, ...]
    match_kind: MatchKind

    def to_json(self, region: str = "ZZ") -> dict[str, Any]:
        """A JSON-ready dict: ``number`` (E.164 or as presented), its ``display`` form,
        ``match_kind``, ``matches``."""
        shown = None if self.number is None else self.number.e164 or self.number.raw
        return {
            "number": shown,
            "display": display_number(shown or "", region),
            "match_kind": self.match_kind,
            "matches": [card.to_json(region) for card in self.matches],
        }


async def lookup_contacts(
    session: AsyncSession,
    number: str,
    region: str,
    suffix_digits: int,
    *,
    limit: int = MAX_MATCHES,
) -> LookupResult:
    """The contacts owning ``number``: exact match first, else the last ``suffix_digits``.

    ``suffix_digits=0`` disables suffix matching; it is also skipped for internal
    extensions and numbers with fewer digits than ``suffix_digits``. One query.
    """
    normalised = normalise(number, region)
    if normalised is None:
        return LookupResult(None, (), "none")
    sql, params = matching_phones(normalised, suffix_digits)
    cards, kind = await fetch_cards(session, sql, params, limit=limit)
    return _result(normalised, cards, kind)


def find_contacts(
    conn: Connection, number: str, region: str, suffix_digits: int, *, limit: int = MAX_MATCHES
) -> LookupResult:
    """:func:`lookup_contacts` on a synchronous connection (the telephony worker's thread)."""
    normalised = normalise(number, region)
    if normalised is None:
        return LookupResult(None, (), "none")
    sql, params = matching_phones(normalised, suffix_digits)
    statement = _cards_statement(sql, ())
    rows = conn.execute(statement, {**params, "limit": limit, "offset": 0}).all()
    return _result(normalised, tuple(assemble_cards(rows)), rows[0][0] if rows else "none")


def _result(number: NormalisedNumber, cards: tuple[ContactCard, ...], kind: str) -> LookupResult:
    match_kind: MatchKind = "none" if not cards else "suffix" if kind == "suffix" else "exact"
    return LookupResult(number, cards, match_kind)


def matching_phones(number: NormalisedNumber, suffix_digits: int) -> tuple[str, dict[str, Any]]:
    """SQL selecting ``(contact_id, kind)`` of the phones matching ``number``, and its params.

    The suffix branch runs only when the exact branch finds nothing (``NOT EXISTS``),
    and for a valid caller number only over stored numbers without E.164.
    """
    if number.e164 is not None:
        column, params = "e164", {"exact": number.e164}
    else:
        column, params = "rev_digits", {"exact": rev_digits(number)}
    sql = f"SELECT contact_id, 'exact' AS kind FROM phone_numbers WHERE {column} = :exact"
    if not _suffix_applies(number, suffix_digits):
        return sql, params
    key = suffix_key(number.digits, suffix_digits)
    # not "e164 IS NULL": SQLite would walk that index (the few odd numbers) instead of the range
    only_odd = " AND coalesce(e164, '') = ''" if number.e164 is not None else ""
    return (
        f"{sql} UNION ALL SELECT contact_id, 'suffix' AS kind FROM phone_numbers"
        f" WHERE rev_digits >= :lo AND rev_digits < :hi{only_odd}"
        f" AND NOT EXISTS (SELECT 1 FROM phone_numbers x WHERE x.{column} = :exact)",
        {**params, "lo": key, "hi": key + ":"},
    )


async def fetch_cards(
    session: AsyncSession,
    matched_sql: str,
    params: dict[str, Any],
    *,
    limit: int,
    offset: int = 0,
    expanding: tuple[str, ...] = (),
) -> tuple[tuple[ContactCard, ...], str]:
    """The cards of the contacts ``matched_sql`` selects, ordered by display name.

    ``matched_sql`` selects ``(contact_id, kind)``; the kind of the first match
    (or ``"none"``) comes back with the cards. ``expanding`` names list params.
    """
    params = {**params, "limit": limit, "offset": offset}
    if session.new or session.dirty or session.deleted:
        await session.flush()  # what session.execute's autoflush would do
    connection = await session.connection()
    if connection.dialect.driver == "aiosqlite" and not expanding:
        rows = await _fetch_sqlite(connection, cards_sql(matched_sql), params)
    else:
        statement = _cards_statement(matched_sql, expanding)
        rows = (await connection.execute(statement, params)).all()
    return tuple(assemble_cards(rows)), rows[0][0] if rows else "none"


async def _fetch_sqlite(
    connection: AsyncConnection, sql: str, params: dict[str, Any]
) -> Sequence[Sequence[Any]]:
    # The hot path of every screen pop. Through SQLAlchemy, aiosqlite makes four
    # thread round trips per query (cursor, execute, fetchall, close), which cost
    # more than SQLite's own work; execute_fetchall makes one. The SQL is plain
    # SQLite with named parameters, run on the session's own connection.
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    return list(await driver.execute_fetchall(sql, params))


def cards_sql(matched_sql: str) -> str:
    """The whole card query around ``matched_sql`` (named parameters ``:limit``, ``:offset``)."""
    return _CARDS_SQL.format(matched=matched_sql)


def assemble_cards(rows: Iterable[Sequence[Any]]) -> list[ContactCard]:
    """Fold card rows (one per phone x e-mail of a contact) into cards, keeping row order.

    Columns as in the card query: kind, contact (id, display, first, last name, tags),
    organization (id, name), phone (id, raw, e164, label), e-mail (id, address, label).
    """
    heads: dict[int, ContactCard] = {}
    phones: dict[int, dict[int, PhoneRef]] = {}
    emails: dict[int, dict[int, EmailRef]] = {}
    for row in rows:
        _, cid, display, first, last, tags, org_id, org_name, *phone, email_id, address, label = row
        if cid not in heads:
            org = None if org_id is None else OrganizationRef(org_id, org_name)
            heads[cid] = ContactCard(cid, display, first, last, org, (), (), _tags(tags))
        if phone[0] is not None:
            phones.setdefault(cid, {})[phone[0]] = PhoneRef(*phone)
        if email_id is not None:
            emails.setdefault(cid, {})[email_id] = EmailRef(email_id, address, label)
    return [
        dataclasses.replace(
            card,
            phones=tuple(phones.get(cid, {}).values()),
            emails=tuple(emails.get(cid, {}).values()),
        )
        for cid, card in heads.items()
    ]


def _tags(value: Any) -> tuple[str, ...]:
    # raw drivers hand the JSON column over as its text
    if not value or value == "[]":
        return ()
    return tuple(orjson.loads(value) if isinstance(value, str | bytes) else value)


async def load_cards(session: AsyncSession, ids: Sequence[int]) -> tuple[ContactCard, ...]:
    """The cards of the contacts ``ids``, in that order (missing ids are left out)."""
    if not ids:
        return ()
    matched = "SELECT id AS contact_id, 'exact' AS kind FROM contacts WHERE id IN :ids"
    cards, _ = await fetch_cards(
        session, matched, {"ids": list(ids)}, limit=len(ids), expanding=("ids",)
    )
    by_id = {card.id: card for card in cards}
    return tuple(by_id[i] for i in ids if i in by_id)


@functools.lru_cache(maxsize=64)
def _cards_statement(matched_sql: str, expanding: tuple[str, ...]) -> TextClause:
    # A handful of shapes (exact on e164 or digits, with or without suffix, search...):
    # built once each, so SQLAlchemy finds them in its compiled cache at once.
    statement = text(cards_sql(matched_sql))
    if expanding:
        statement = statement.bindparams(*(bindparam(name, expanding=True) for name in expanding))
    return statement


def _suffix_applies(number: NormalisedNumber, n: int) -> bool:
    return n > 0 and number.kind != "short" and len(number.digits) >= n


# One row per contact x phone x e-mail of the picked contacts; {matched} yields
# (contact_id, kind). DISTINCT keeps a contact once when several of its numbers match.
_CARDS_SQL = """
WITH m AS ({matched}),
picked AS (
    SELECT DISTINCT c.id AS cid, c.display_name, m.kind
    FROM m JOIN contacts c ON c.id = m.contact_id
    ORDER BY c.display_name, c.id
    LIMIT :limit OFFSET :offset
)
SELECT picked.kind, c.id, c.display_name, c.first_name, c.last_name, c.tags,
    o.id AS org_id, o.name AS org_name,
    p.id AS phone_id, p.raw, p.e164, p.label AS phone_label,
    e.id AS email_id, e.address, e.label AS email_label
FROM picked
JOIN contacts c ON c.id = picked.cid
LEFT JOIN organizations o ON o.id = c.organization_id
LEFT JOIN phone_numbers p ON p.contact_id = c.id
LEFT JOIN email_addresses e ON e.contact_id = c.id
ORDER BY c.display_name, c.id, p.id, e.id
"""
