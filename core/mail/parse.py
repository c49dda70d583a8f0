"""MIME parsing: raw message bytes in, one immutable MailItem out.

``parse_message`` never raises for bad input. Headers are read by the lean
reader in ``core.mail.headers`` (the same values ``parse_headers`` gives);
the body tree by ``core.mail.mime_tree`` (the stdlib parser for what it does
not take), after which every payload is decoded here, leniently: base64 with
junk, unknown or wrong charsets, a multipart whose boundary is missing.
Problems that were worked around are listed in ``MailItem.defects``;
``parse_error`` is set only when no usable message was found (the caller keeps
the raw bytes in any case).

Body rules: ``text/plain`` and ``text/html`` parts that are not attachments
form the body (several parts of one kind are joined by a newline; both
alternatives of multipart/alternative are kept). Every other leaf is an
Attachment; ``message/rfc822`` parts are kept whole as ``.eml`` attachments.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.policy import Compat32, compat32

from core.mail.addresses import Address
from core.mail.decode import b64decode_lenient, decode_header_bytes, decode_text, qp_decode
from core.mail.headers import MailHeaders, header_fields, parse_headers, split_message
from core.mail.mime_tree import mime_tree
from core.mail.words import clean_header_text, decode_words

__all__ = ["Attachment", "MailBody", "MailItem", "parse_body", "parse_headers", "parse_message"]

DEFAULT_MAX_ATTACHMENT_BYTES = 25 * 2**20
_MAX_DEPTH = 40
_BOUNDARY_LINE = re.compile(rb"^--([^\s]{1,200}?)(?:--)?[ \t]*\r?$", re.MULTILINE)
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f]")


class _VerbatimPolicy(Compat32):
    """Writes header fields exactly as parsed (compat32 keeps their folding)
    instead of re-folding them, which fails on odd values."""

    def fold_binary(self, name: str, value: str) -> bytes:
        return f"{name}: {value}{self.linesep}".encode("utf-8", "surrogateescape")


_VERBATIM = _VerbatimPolicy(mangle_from_=False)


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attached or inline part. ``truncated`` parts exceeded the size limit:
    ``content`` is empty, ``size`` and ``sha256`` describe the real content."""

    filename: str | None
    content_type: str
    size: int
    sha256: str
    content: bytes
    inline: bool
    content_id: str | None
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class MailItem:
    """A parsed message. Ids are normalised (no ``<>``), addresses lower-cased,
    ``date`` is aware UTC, ``html`` is as received (sanitise before display)."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    content_hash: str
    parse_error: str | None = None
    defects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MailBody:
    """What the body of a message holds; ``error`` if it could not be read at all."""

    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = ()
    error: str | None = None


@dataclass(slots=True)
class _Walk:
    """Accumulates one message's body while its MIME tree is visited."""

    max_bytes: int
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    def result(self) -> MailBody:
        return MailBody(
            text="\n".join(self.texts) if self.texts else None,
            html="\n".join(self.htmls) if self.htmls else None,
            attachments=tuple(self.attachments),
            defects=tuple(dict.fromkeys(self.defects)),
        )


def parse_message(
    raw: bytes, *, max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
) -> MailItem:
    """Parse a whole message; bad input gives ``parse_error``, never an exception."""
    raw = bytes(raw)
    headers = parse_headers(raw)
    if not headers.readable:
        return _item(headers, MailBody())
    return _item(headers, parse_body(raw, max_attachment_bytes=max_attachment_bytes))


def parse_body(raw: bytes, *, max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> MailBody:
    """The bodies and attachments of a message whose headers were read already
    (``parse_headers``, readable): they are not decoded again. Never raises for bad
    input: ``error`` says what went wrong."""
    try:
        return _parse_body(bytes(raw), max_attachment_bytes)
    except Exception as exc:  # the contract: bad input is reported, never raised
        return MailBody(error=f"body: {type(exc).__name__}: {exc}")


def joined_error(*errors: str | None) -> str | None:
    """The errors of the headers and the body of a message, as ``parse_error`` holds them."""
    return "; ".join(filter(None, errors)) or None


def _item(headers: MailHeaders, body: MailBody) -> MailItem:
    return MailItem(
        message_id=headers.message_id,
        in_reply_to=headers.in_reply_to,
        references=headers.references,
        subject=headers.subject,
        from_=headers.from_,
        to=headers.to,
        cc=headers.cc,
        reply_to=headers.reply_to,
        date=headers.date,
        text=body.text,
        html=body.html,
        attachments=body.attachments,
        content_hash=headers.content_hash,
        parse_error=joined_error(headers.parse_error, body.error),
        defects=body.defects,
    )


def _parse_body(raw: bytes, max_bytes: int) -> MailBody:
    message = mime_tree(raw) or message_from_bytes(raw, policy=compat32)
    walk = _Walk(max_bytes)
    if message.get_content_maintype() == "multipart" and not message.is_multipart():
        message = _repair_boundary(raw, message, walk)
    _visit(message, walk, depth=0)
    return walk.result()


def _repair_boundary(raw: bytes, message: Message, walk: _Walk) -> Message:
    """Re-parse a top-level multipart whose boundary is missing or wrong,
    using the first ``--boundary`` line of the body; else keep it as text."""
    block, body = split_message(raw)
    found = _BOUNDARY_LINE.search(body)
    if found is None or body.count(b"--" + found[1]) < 2:
        return message
    walk.defects.append("multipart boundary missing or wrong: recovered from body")
    kept = [f for f in re.split(rb"\r?\n(?![ \t])", block) if f.strip() and not _is_content_type(f)]
    subtype = message.get_content_subtype().encode("ascii", "replace")
    content_type = b'Content-Type: multipart/%s; boundary="%s"' % (subtype, found[1])
    return message_from_bytes(b"\n".join([*kept, content_type, b"", body]), policy=compat32)


def _is_content_type(field_bytes: bytes) -> bool:
    return bool(header_fields(field_bytes).get("content-type"))


def _visit(part: Message, walk: _Walk, depth: int) -> None:
    if depth > _MAX_DEPTH:
        walk.defects.append(f"MIME nesting deeper than {_MAX_DEPTH}: rest ignored")
        return
    maintype = part.get_content_maintype()
    if part.is_multipart() and maintype != "message":
        for child in part.get_payload():
            if isinstance(child, Message):
                _visit(child, walk, depth + 1)
        return
    try:
        _visit_part(part, maintype, walk)
    except Exception as exc:  # one broken part must not cost the others
        walk.defects.append(f"{maintype} part skipped: {type(exc).__name__}: {exc}")


def _visit_part(part: Message, maintype: str, walk: _Walk) -> None:
    if maintype == "message" and part.is_multipart():
        walk.attachments.append(_embedded_message(part, walk))
    elif maintype == "multipart":
        walk.defects.append("multipart without usable boundary: kept as text")
        _add_body(part, walk, "text/plain")
    else:
        _visit_leaf(part, walk)


def _visit_leaf(part: Message, walk: _Walk) -> None:
    content_type = part.get_content_type()
    disposition = part.get_content_disposition()
    filename = _filename(part)
    is_body = content_type in ("text/plain", "text/html") and disposition != "attachment"
    if is_body and not (filename and disposition is None):
        _add_body(part, walk, content_type)
    else:
        walk.attachments.append(_attachment(part, walk, _payload(part, walk), filename))


def _add_body(part: Message, walk: _Walk, content_type: str) -> None:
    charset = part.get_content_charset()
    text, exact = decode_text(_payload(part, walk), charset)
    if not exact:
        walk.defects.append(f"{content_type}: charset {charset or 'missing'} did not fit")
    if content_type == "text/html":
        walk.htmls.append(text)
    else:
        walk.texts.append(text.replace("\r\n", "\n"))


def _payload(part: Message, walk: _Walk) -> bytes:
    """The part's content with its transfer encoding undone, leniently."""
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable"):
        encoded = part.get_payload(decode=False)
        data = encoded.encode("ascii", "ignore") if isinstance(encoded, str) else b""
        if encoding == "quoted-printable":
            return qp_decode(data)
        content, clean = b64decode_lenient(data)
        if not clean:
            walk.defects.append("invalid base64 repaired")
        return content
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _attachment(part: Message, walk: _Walk, content: bytes, filename: str | None) -> Attachment:
    content_id = _content_id(part)
    disposition = part.get_content_disposition()
    too_big = len(content) > walk.max_bytes
    if too_big:
        walk.defects.append(f"attachment {filename or '(unnamed)'} over size limit: metadata only")
    return Attachment(
        filename=filename,
        content_type=part.get_content_type(),
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=b"" if too_big else content,
        inline=disposition == "inline" or (disposition is None and content_id is not None),
        content_id=content_id,
        truncated=too_big,
    )


def _embedded_message(part: Message, walk: _Walk) -> Attachment:
    """A message/rfc822 (or other message/*) part, kept whole as an .eml file."""
    inner = [p for p in part.get_payload() if isinstance(p, Message)]
    content = b"\n".join(p.as_bytes(policy=_VERBATIM) for p in inner)
    filename = _filename(part)
    if filename is None:
        subject = decode_words(str(inner[0].get("subject", ""))) if inner else ""
        filename = (_safe_filename(subject) or "message") + ".eml"
    return _attachment(part, walk, content, filename)


def _filename(part: Message) -> str | None:
    name = part.get_filename()
    if not name:
        return None
    return _safe_filename(decode_words(_unescape(name))) or None


def _safe_filename(name: str) -> str:
    """Last path component, control characters and slashes removed."""
    base = re.split(r"[\\/]", clean_header_text(name))[-1]
    return _UNSAFE_FILENAME.sub("", base).strip()


def _content_id(part: Message) -> str | None:
    value = part.get("content-id")
    if value is None:
        return None
    return str(value).strip().strip("<>").strip() or None


def _unescape(value: str) -> str:
    """Undo the surrogate escapes the stdlib parser puts in for 8-bit header bytes."""
    try:
        return decode_header_bytes(value.encode("utf-8", "surrogateescape"))
    except UnicodeError:
        return value
