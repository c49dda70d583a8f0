"""One row of Asterisk's standard ``cdr`` table, typed, and its parsers.

Columns (the SQL table's order, also the cdr_custom mapping in the README):
accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata,
start, answer, end, duration, billsec, disposition, amaflags, userfield,
uniqueid, linkedid, peeraccount, sequence.

Times: CDR files and ``timestamp``/``datetime`` columns carry no time zone.
They are read in the zone given (``cdr.timezone``, UTC by default: cdr.conf
``usegmtime``, or an Asterisk server running in UTC) and kept as aware UTC
datetimes. ``timestamptz`` columns keep their own zone. Resolution is 1 s
(Asterisk truncates). An empty ``answer`` means never answered.

FreePBX's ``asteriskcdrdb.cdr`` has ``calldate`` instead of ``start`` and no
``answer``/``end``: they are derived from the PBX's own counts, end = start +
duration and answer = end - billsec (when billsec > 0).

A row that cannot be read raises :class:`BadCdrRow`; readers log it with where
it came from and skip it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "userfield",
    "uniqueid",
    "linkedid",
    "peeraccount",
    "sequence",
)


class BadCdrRow(ValueError):
    """A CDR row lacks a needed field or has one that cannot be read."""


@dataclass(frozen=True, slots=True)
class CdrRow:
    """One CDR row: one party A -> party B leg of a call (``linkedid``).

    ``disposition`` is Asterisk's: ANSWERED, NO ANSWER, BUSY, FAILED,
    CONGESTION. ``answer`` is when party A's side was up, which for a channel
    answered by the dialplan (``Answer()`` before ``Queue()``) is not when an
    agent picked up.
    """

    accountcode: str
    src: str
    dst: str
    dcontext: str
    clid: str
    channel: str
    dstchannel: str
    lastapp: str
    lastdata: str
    start: datetime
    answer: datetime | None
    end: datetime
    duration: int
    billsec: int
    disposition: str
    amaflags: str
    userfield: str
    uniqueid: str
    linkedid: str
    peeraccount: str
    sequence: int


def row_from_fields(fields: Sequence[str], zone: tzinfo = UTC) -> CdrRow:
    """A row from the 21 text fields of a cdr_custom line (``COLUMNS`` order)."""
    if len(fields) != len(COLUMNS):
        raise BadCdrRow(f"{len(fields)} fields, expected {len(COLUMNS)}")
    return row_from_mapping(dict(zip(COLUMNS, fields, strict=True)), zone)


def row_from_mapping(values: Mapping[str, object], zone: tzinfo = UTC) -> CdrRow:
    """A row from column values (text or SQL types); FreePBX's ``calldate`` is understood."""
    start = _time(values, "start" if "start" in values else "calldate", zone)
    if start is None:
        raise BadCdrRow("no start time")
    duration, billsec = _int(values, "duration"), _int(values, "billsec")
    if "end" in values:
        end, answer = _time(values, "end", zone), _time(values, "answer", zone)
    else:  # FreePBX: only calldate, duration and billsec
        end = start + timedelta(seconds=duration)
        answer = end - timedelta(seconds=billsec) if billsec > 0 else None
    if end is None:
        raise BadCdrRow("no end time")
    linkedid = _text(values, "linkedid")
    if not linkedid:
        raise BadCdrRow("no linkedid")
    text = {name: _text(values, name) for name in _TEXT_COLUMNS}
    return CdrRow(
        accountcode=text["accountcode"],
        src=text["src"],
        dst=text["dst"],
        dcontext=text["dcontext"],
        clid=text["clid"],
        channel=text["channel"],
        dstchannel=text["dstchannel"],
        lastapp=text["lastapp"],
        lastdata=text["lastdata"],
        start=start,
        answer=answer,
        end=end,
        duration=duration,
        billsec=billsec,
        disposition=text["disposition"],
        amaflags=text["amaflags"],
        userfield=text["userfield"],
        uniqueid=text["uniqueid"],
        linkedid=linkedid,
        peeraccount=text["peeraccount"],
        sequence=_int(values, "sequence"),
    )


#: The columns read as text: all but the times and the numbers.
_TEXT_COLUMNS = tuple(
    name
    for name in COLUMNS
    if name not in ("start", "answer", "end", "duration", "billsec", "linkedid", "sequence")
)


def _text(values: Mapping[str, object], name: str) -> str:
    value = values.get(name)
    return "" if value is None else str(value)


def _int(values: Mapping[str, object], name: str) -> int:
    value = values.get(name)
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise BadCdrRow(f"{name}: not a number: {value!r}") from None


def _time(values: Mapping[str, object], name: str, zone: tzinfo) -> datetime | None:
    value = values.get(name)
    if value is None or value == "" or str(value).startswith("0000-00-00"):
        return None  # MySQL writes a zero date for "never"
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            raise BadCdrRow(f"{name}: not a time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when.astimezone(UTC)
