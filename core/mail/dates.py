"""Lenient Date header parsing to timezone-aware UTC datetimes.

Accepts RFC 5322 dates and what clients really send: a missing zone
(assumed UTC), two-digit years (< 69 -> 20xx, else 19xx) and three-digit
ones (+1900, RFC 5322 4.3), named zones (EST, CEST, MESZ...), ``+02:00``
offsets, ISO 8601 and leap second 60. Anything else gives None.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_tz

# Offsets in hours. stdlib knows only the US and UT/GMT ones, and maps every
# other name silently to UTC.
_NAMED_ZONES = {
    "UT": 0,
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "WEST": 1,
    "BST": 1,
    "CET": 1,
    "MEZ": 1,
    "CEST": 2,
    "MESZ": 2,
    "EET": 2,
    "EEST": 3,
    "MSK": 3,
    "IST": 5.5,
    "HKT": 8,
    "JST": 9,
    "KST": 9,
    "AEST": 10,
    "AEDT": 11,
    "AST": -4,
    "ADT": -3,
    "EST": -5,
    "EDT": -4,
    "CST": -6,
    "CDT": -5,
    "MST": -7,
    "MDT": -6,
    "PST": -8,
    "PDT": -7,
}
_AFTER_TIME = re.compile(r"\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d+)?)?\s*(.*)", re.DOTALL)
_NUMERIC_ZONE = re.compile(r"(?:GMT|UTC?)?\s*([+-])(\d{1,2}):?(\d{2})?(?!\d)")
_NAMED_ZONE = re.compile(r"\(?([A-Za-z]{1,5})\b")
_MIN_YEAR, _MAX_YEAR = 1970, 2200


def parse_date(value: str | None) -> datetime | None:
    """Parse a Date header to an aware UTC datetime, or None if unusable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        parsed = _rfc5322(value) or _iso(value)
    except (ValueError, OverflowError, IndexError, TypeError):
        return None
    if parsed is None or not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
        return None
    return parsed


def _rfc5322(value: str) -> datetime | None:
    parts = parsedate_tz(value)
    if parts is None:
        return None
    year, month, day, hour, minute, second = parts[:6]
    if 100 <= year < 1000:
        year += 1900
    local = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    return local - _zone_offset(value)


def _iso(value: str) -> datetime | None:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _zone_offset(value: str) -> timedelta:
    """The zone written after the time of day; none or unknown means UTC."""
    after = _AFTER_TIME.search(value)
    rest = after[1] if after is not None else ""
    numeric = _NUMERIC_ZONE.match(rest)
    if numeric is not None:
        sign = -1 if numeric[1] == "-" else 1
        return sign * timedelta(hours=int(numeric[2]), minutes=int(numeric[3] or 0))
    named = _NAMED_ZONE.match(rest)
    if named is not None:
        return timedelta(hours=_NAMED_ZONES.get(named[1].upper(), 0))
    return timedelta(0)
