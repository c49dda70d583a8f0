"""Fast, lenient reading of a message's header block, without the body.

``parse_headers`` is the cheap first step of mail sync: enough to dedupe,
thread and link a message to contacts before (or without) parsing MIME.
The header block ends, as in the stdlib parser, at the first empty line or
the first line that is neither a field nor a continuation; a leading mbox
``From `` line is skipped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.mail.addresses import Address, parse_addresses
from core.mail.dates import parse_date
from core.mail.decode import decode_header_bytes
from core.mail.words import clean_header_text, decode_words

_BLOCK = re.compile(
    rb"(?:From [^\n]*\n)?((?:(?:[!-9;-~]+[ \t]*:|[ \t])[^\n]*(?:\n|\Z))*)(?:\r?\n)?"
)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:(.*)", re.DOTALL)
_SPACE = re.compile(rb"\s+")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"@]{1,64}@[A-Za-z0-9.-]{1,253}")
# Header fields an author's client writes once and no server rewrites; the
# content hash covers these and the body, never trace fields such as
# Received, Delivered-To, Return-Path, X-* or Status that differ per copy.
_HASHED_FIELDS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "content-type",
    "content-transfer-encoding",
)

_READ = (
    "message-id",
    "in-reply-to",
    "references",
    "subject",
    "from",
    "to",
    "cc",
    "reply-to",
    "date",
)

Fields = Mapping[str, Sequence[bytes]]


@dataclass(frozen=True, slots=True)
class MailHeaders:
    """What the header block says, decoded; ``parse_error`` if there was none."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    content_hash: str
    parse_error: str | None = None
    #: False when the header block itself is unreadable (the body is not parsed then);
    #: an address field that cannot be parsed is read leniently and named in parse_error.
    readable: bool = True


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """Split ``raw`` into its header block and its body."""
    match = _BLOCK.match(raw)
    assert match is not None  # every group may be empty, so it always matches
    return match[1], raw[match.end() :]


def header_fields(block: bytes) -> dict[str, list[bytes]]:
    """Unfold a header block into ``{lower-case name: [raw values in order]}``."""
    fields: dict[str, list[bytes]] = {}
    for line in _FOLD.sub(b"", block).split(b"\n"):
        match = _FIELD.match(line)
        if match is not None:
            name = match[1].decode("ascii").lower()
            fields.setdefault(name, []).append(match[2].strip())
    return fields


def parse_headers(raw: bytes) -> MailHeaders:
    """Read only the header block of ``raw``; never raises for bad input."""
    raw = bytes(raw)
    block, body = split_message(raw)
    fields = header_fields(block)
    digest = content_hash(fields, body)
    if not fields:
        return _empty_headers(digest, "no header fields found")
    try:
        return _decode_fields(fields, digest)
    except Exception as exc:  # the contract: bad input is reported, never raised
        return _empty_headers(digest, f"headers: {type(exc).__name__}: {exc}")


def content_hash(fields: Fields, body: bytes) -> str:
    """SHA-256 hex of the message normalised for dedupe.

    Normalised: only the author-written fields in ``_HASHED_FIELDS`` (all
    occurrences, in order, whitespace runs collapsed) and the body with
    line ends as LF and trailing whitespace removed from every line and the
    end. The same message fetched twice, from two folders or two mailboxes
    (with different trace headers, CRLF or LF) hashes the same.
    """
    digest = hashlib.sha256()
    for name in _HASHED_FIELDS:
        for value in fields.get(name, ()):
            digest.update(name.encode() + b":" + _SPACE.sub(b" ", value).strip() + b"\n")
    digest.update(b"\n")
    digest.update(strip_trailing_space(body))
    return digest.hexdigest()


def strip_trailing_space(body: bytes) -> bytes:
    """``body`` without spaces, tabs and CRs at line ends, nor whitespace at its end.

    The same bytes as ``re.sub(rb"[ \\t\\r]+(?=\\n)|\\s+\\Z", b"", body)``, about
    12 times faster (that regex was most of ``parse_headers``' time).
    """
    lines = [line.rstrip(b" \t\r") for line in body.split(b"\n")]
    return b"\n".join(lines).rstrip()


def normalise_id(value: str | None, *, require_at: bool = False) -> str | None:
    """The first ``<id>`` in ``value`` without brackets and whitespace, else a bare token."""
    if value is None:
        return None
    match = _ANGLE_ID.search(value)
    if match is not None:
        return _WHITESPACE.sub("", match[1]) or None
    tokens = value.split()
    if len(tokens) != 1 or (require_at and "@" not in tokens[0]):
        return None
    return tokens[0].strip("<>") or None


def parse_references(value: str | None) -> tuple[str, ...]:
    """Every message id in a References header, first occurrence order, no duplicates."""
    if not value:
        return ()
    found = [_WHITESPACE.sub("", m) for m in _ANGLE_ID.findall(value)]
    if not found:
        found = [t.strip("<>") for t in re.split(r"[\s,]+", value) if "@" in t]
    return tuple(dict.fromkeys(i for i in found if i))


def _decode_fields(fields: Fields, digest: str) -> MailHeaders:
    text = {
        name: [decode_header_bytes(v) for v in fields[name]] for name in _READ if name in fields
    }
    first = {name: values[0] for name, values in text.items()}
    subject = first.get("subject")
    errors: list[str] = []

    def addresses(name: str) -> tuple[Address, ...]:
        return _addresses(name, text.get(name, []), errors)

    return MailHeaders(
        message_id=normalise_id(first.get("message-id")),
        in_reply_to=normalise_id(first.get("in-reply-to"), require_at=True),
        references=parse_references(" ".join(text.get("references", ()))),
        subject=None if subject is None else clean_header_text(decode_words(subject)),
        from_=addresses("from"),
        to=addresses("to"),
        cc=addresses("cc"),
        reply_to=addresses("reply-to"),
        date=parse_date(first.get("date")),
        content_hash=digest,
        parse_error="; ".join(errors) or None,
    )


def _addresses(name: str, values: Sequence[str], errors: list[str]) -> tuple[Address, ...]:
    """The field's addresses; when the parser fails on it (nested comments make the
    stdlib's recurse past the limit), the bare addresses found in the raw text."""
    try:
        return parse_addresses(values)
    except (RecursionError, ValueError, IndexError, TypeError) as exc:
        errors.append(f"{name}: {type(exc).__name__}, read leniently")
    found = (m.lower() for value in values for m in _BARE_ADDRESS.findall(value))
    return tuple(Address("", a) for a in dict.fromkeys(found))


def _empty_headers(digest: str, error: str) -> MailHeaders:
    return MailHeaders(None, None, (), None, (), (), (), (), None, digest, error, readable=False)
