"""The second phase of storing a message: bodies and attachments, after the headers.

Mail sync stores each new message with its raw bytes and decoded headers
first (``EmailMessage.body_parsed`` false): it is then already deduplicated,
threaded, linked, listed and announced. Parsing MIME costs ten times more,
so it follows here, from the stored raw bytes, off the event loop:

1. ``unparsed`` picks the oldest messages of a mailbox still to parse
   (bounded by count and bytes), with what the first phase found wrong in
   their headers;
2. ``parse_bodies`` (a plain function of picklable values, for a process
   pool) parses their bodies (``parse_body``: the headers are not read again)
   and writes their attachments to the blob store, so the attachments' bytes
   never travel back to the event loop's process;
3. ``store_bodies`` writes text, HTML, parse error and attachment rows and
   marks the messages parsed, in one transaction.

The state lives in the database: a crash between the phases loses nothing,
the next drain parses whatever is still marked. Until then a message has no
text, HTML or attachments, and its JSON says ``body_parsed: false``
(:mod:`core.mail.email_json`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.mail.blobs import BlobStore
from core.mail.columns import attachment_values
from core.mail.models import EmailAttachment, EmailMessage, EmailRaw
from core.mail.parse import Attachment, joined_error, parse_body


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A stored message whose body is still to parse, and its headers' parse error."""

    email_id: int
    raw: bytes
    header_error: str | None


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """What phase two found in a message; attachments without content (already stored)."""

    email_id: int
    text: str | None
    html: str | None
    parse_error: str | None
    attachments: tuple[Attachment, ...]


async def unparsed(
    session: AsyncSession, mailbox: str, max_count: int, max_bytes: int
) -> list[Unparsed]:
    """The oldest messages of ``mailbox`` whose body is not parsed yet:
    at most ``max_count`` and about ``max_bytes`` (at least one)."""
    sizes = await session.execute(
        select(EmailMessage.id, EmailMessage.size, EmailMessage.parse_error)
        .where(EmailMessage.body_parsed.is_(False), EmailMessage.mailbox == mailbox)
        .order_by(EmailMessage.id)
        .limit(max_count)
    )
    errors: dict[int, str | None] = {}
    total = 0
    for email_id, size, error in sizes:
        if errors and total + size > max_bytes:
            break
        errors[email_id] = error
        total += size
    if not errors:
        return []
    rows = await session.execute(
        select(EmailRaw.email_id, EmailRaw.raw).where(EmailRaw.email_id.in_(list(errors)))
    )
    return sorted(
        (Unparsed(email_id, raw, errors[email_id]) for email_id, raw in rows),
        key=lambda message: message.email_id,
    )


def parse_bodies(
    pending: Sequence[Unparsed], blob_root: Path, max_attachment_bytes: int
) -> list[ParsedBody]:
    """Parse each body and put its attachments in the blob store at ``blob_root``."""
    blobs = BlobStore(blob_root)
    parsed = []
    for message in pending:
        body = parse_body(message.raw, max_attachment_bytes=max_attachment_bytes)
        for part in body.attachments:
            if not part.truncated:
                blobs.put(part.content, part.sha256)
        attachments = tuple(dataclasses.replace(a, content=b"") for a in body.attachments)
        error = joined_error(message.header_error, body.error)
        parsed.append(ParsedBody(message.email_id, body.text, body.html, error, attachments))
    return parsed


async def store_bodies(session: AsyncSession, parsed: Sequence[ParsedBody]) -> None:
    """Write what ``parse_bodies`` found and mark those messages parsed (caller commits)."""
    if not parsed:
        return
    await session.execute(
        update(EmailMessage),
        [
            {
                "id": body.email_id,
                "text": body.text,
                "html": body.html,
                "parse_error": body.parse_error,
                "body_parsed": True,
            }
            for body in parsed
        ],
    )
    rows = [
        attachment_values(body.email_id, n, part)
        for body in parsed
        for n, part in enumerate(body.attachments)
    ]
    if rows:
        await session.execute(insert(EmailAttachment), rows)
