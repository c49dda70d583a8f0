"""Contact search: by any part of a name, organization, tag, e-mail address or number.

Text is compared folded (:func:`fold`): lower case, German umlauts spelt out
(ü = ue, ß = ss) so that "müller" finds "Mueller" and "mueller" finds "Müller".
Each contact keeps its names, organization and tags folded in
``contacts.search_key`` (:func:`search_key`); the key holds the accent-less
spelling too ("muller"), so that a query typed without umlauts finds them.

A query that looks like a phone number matches any run of digits of a stored
number: "0171 555" finds +49 171 5551234 (the national trunk prefix or the
international prefix is dropped first). Numbers are stored with their digits
reversed (``phone_numbers.rev_digits``), and a substring of the reversed digits is
the reversed substring, so no other column is needed.

On PostgreSQL ``pg_trgm`` GIN indexes on ``contacts.search_key``,
``phone_numbers.rev_digits`` and ``email_addresses.address`` (migration 0008)
serve the ``LIKE '%…%'``: a query of three or more characters reads the rows
holding its trigrams, not the table. SQLite has no such index, and scans: about
a second at a million contacts (docs/BENCHMARKS.md), fine for the embedded
default's size; a large installation runs on PostgreSQL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from core.lookup import ContactCard, fetch_cards
from core.phones import normalise, trunk_prefix

_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_NUMBER_LIKE = re.compile(r"[\d\s()+\-./]+")
_NON_DIGITS = re.compile(r"\D")
#: Fewest digits a number search needs (fewer would match half the phone book).
MIN_DIGITS = 3


def fold(text: str) -> str:
    """``text`` for comparing: whitespace collapsed, lower case, umlauts spelt out, no accents."""
    lowered = " ".join(text.split()).lower().translate(_GERMAN)
    return _strip_accents(lowered)


def search_key(parts: Iterable[str | None]) -> str:
    """The ``contacts.search_key`` of these names: folded, and without umlauts when different."""
    text = " ".join(" ".join(p for p in parts if p).split()).lower()
    german = text.translate(_GERMAN)
    plain = _strip_accents(text).replace("ß", "ss")
    return german if plain == german else f"{german} | {plain}"


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def number_digits(q: str, region: str) -> str | None:
    """The digits a number query looks for, or None if ``q`` is no number query.

    A whole valid number is looked for by its E.164 digits; part of an
    international number (``+``/``00``) from its country code on;
    a national one without its trunk prefix (``0171 555`` -> ``171555``), so that
    it is found inside E.164 digits and inside numbers stored as typed alike.
    """
    if not _NUMBER_LIKE.fullmatch(q):
        return None
    digits = _NON_DIGITS.sub("", q)
    if len(digits) < MIN_DIGITS:
        return None
    trunk = trunk_prefix(region)
    prefixed = q.lstrip().startswith("+") or (bool(trunk) and digits.startswith(trunk))
    number = normalise(q, region) if prefixed else None
    if number is not None and number.e164 is not None:
        return number.digits  # a whole number: its E.164 digits, "(0)" and all prefixes gone
    if q.lstrip().startswith("+"):
        return digits
    if digits.startswith("00"):
        return digits[2:]
    if trunk and digits.startswith(trunk) and len(digits) - len(trunk) >= MIN_DIGITS:
        return digits[len(trunk) :]
    return digits


async def search_contacts(
    session: AsyncSession, q: str, region: str, limit: int = 50, offset: int = 0
) -> list[ContactCard]:
    """Contacts matching ``q`` (see the module), ordered by display name; all for an empty ``q``."""
    q = " ".join(q.split())
    digits = number_digits(q, region)
    if digits is not None:
        matched, params = _NUMBER_SEARCH, {"pattern": f"%{digits[::-1]}%"}
    elif not q:
        matched, params = "SELECT id AS contact_id, 'search' AS kind FROM contacts", {}
    else:
        params = {
            "pattern": f"%{_escape_like(fold(q))}%",
            "address": f"%{_escape_like(q.lower())}%",
        }
        matched = _TEXT_SEARCH
    cards, _ = await fetch_cards(session, matched, params, limit=limit, offset=offset)
    return list(cards)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_NUMBER_SEARCH = """
SELECT DISTINCT contact_id, 'search' AS kind FROM phone_numbers WHERE rev_digits LIKE :pattern
"""

# Two scans rather than OR EXISTS: a correlated lookup per contact costs more than the scan
_TEXT_SEARCH = """
SELECT id AS contact_id, 'search' AS kind FROM contacts WHERE search_key LIKE :pattern ESCAPE '\\'
UNION
SELECT contact_id, 'search' AS kind FROM email_addresses WHERE address LIKE :address ESCAPE '\\'
"""
