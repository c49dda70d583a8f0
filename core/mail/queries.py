"""Reading the mail mirror: lists, one message with its attachments, the history source."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.history import HistoryItem
from core.mail import parse_message
from core.mail.blobs import BlobStore
from core.mail.models import EmailAttachment, EmailContact, EmailMessage, EmailRaw
from core.mail.preview import preview


@dataclass(frozen=True, slots=True)
class EmailFilter:
    """Query of ``GET /api/emails``; every field optional, newest first."""

    contact_id: int | None = None
    thread_id: str | None = None
    since: datetime | None = None
    limit: int = 50


async def list_emails(session: AsyncSession, query: EmailFilter) -> list[EmailMessage]:
    """Messages matching ``query``, newest first."""
    stmt = select(EmailMessage).order_by(EmailMessage.sort_at.desc(), EmailMessage.id.desc())
    if query.contact_id is not None:
        stmt = stmt.join(EmailContact).where(EmailContact.contact_id == query.contact_id)
    if query.thread_id is not None:
        stmt = stmt.where(EmailMessage.thread_id == query.thread_id)
    if query.since is not None:
        stmt = stmt.where(EmailMessage.sort_at >= query.since)
    return list(await session.scalars(stmt.limit(query.limit)))


async def get_email(session: AsyncSession, email_id: int) -> EmailMessage:
    """One message; NotFound otherwise."""
    message = await session.get(EmailMessage, email_id)
    if message is None:
        raise NotFound(f"e-mail {email_id} not found")
    return message


async def attachments_of(session: AsyncSession, email_id: int) -> list[EmailAttachment]:
    """The attachments of a message, in MIME order."""
    rows = await session.scalars(
        select(EmailAttachment).where(EmailAttachment.email_id == email_id).order_by("n")
    )
    return list(rows)


async def contacts_of(session: AsyncSession, email_id: int) -> list[int]:
    """Ids of the contacts a message is linked to."""
    rows = await session.scalars(
        select(EmailContact.contact_id).where(EmailContact.email_id == email_id)
    )
    return sorted(rows)


async def attachment_content(
    session: AsyncSession, blobs: BlobStore, email_id: int, n: int
) -> tuple[EmailAttachment, bytes]:
    """Attachment ``n`` and its bytes: from the blob store, else re-extracted from the raw
    message (and the blob restored)."""
    part = await session.get(EmailAttachment, (email_id, n))
    if part is None or part.truncated:
        raise NotFound(f"attachment {n} of e-mail {email_id} not found or over the size limit")
    content = blobs.read(part.sha256)
    if content is None:
        content = await _extract(session, email_id, n, part.sha256)
        blobs.put(content, part.sha256)
    return part, content


async def _extract(session: AsyncSession, email_id: int, n: int, sha256: str) -> bytes:
    raw = await session.scalar(select(EmailRaw.raw).where(EmailRaw.email_id == email_id))
    item = await asyncio.to_thread(parse_message, raw or b"")  # a whole message: off the loop
    if n >= len(item.attachments) or item.attachments[n].sha256 != sha256:
        raise NotFound(f"attachment {n} of e-mail {email_id} cannot be recovered")
    return item.attachments[n].content


_HISTORY = (
    select(EmailMessage)
    .where(
        EmailMessage.id.in_(
            select(EmailContact.email_id)
            .where(EmailContact.contact_id.in_(bindparam("ids", expanding=True)))
            .distinct()
            .scalar_subquery()
        )
    )
    .order_by(EmailMessage.sort_at.desc())
    .limit(bindparam("limit"))
)


def email_history(session: Session, contact_ids: Sequence[int], limit: int) -> list[HistoryItem]:
    """History source (``core.history.HistorySource``): the contacts' e-mails."""
    rows = session.scalars(_HISTORY, {"ids": list(contact_ids), "limit": limit})
    return [HistoryItem("email", m.sort_at, history_json(m)) for m in rows]


def history_json(message: EmailMessage) -> dict[str, Any]:
    """An e-mail in a timeline: the summary plus a short preview of the text."""
    data = message.summary()
    data["preview"] = preview(message.text)
    return data
