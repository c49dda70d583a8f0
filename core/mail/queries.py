"""Reading the mail mirror: lists, one message with its attachments, the history source."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from core.errors import NotFound
from core.history import HistoryCursor, HistoryItem
from core.mail import parse_message
from core.mail.blobs import BlobStore
from core.mail.email_json import emails_json
from core.mail.models import EmailAttachment, EmailContact, EmailMessage, EmailRaw
from core.models import Agent, AgentExtension
from core.paging import decode_cursor, encode_cursor


@dataclass(frozen=True, slots=True)
class MailReaders:
    """Who may read an e-mail and is told of it, besides supervisors and admins (who
    see all): every agent, or the agents of ``agent_ids``."""

    everyone: bool = False
    agent_ids: frozenset[int] = frozenset()

    def admit(self, agent_id: int) -> bool:
        return self.everyone or agent_id in self.agent_ids


Visibility = Literal["linked", "team", "addressed"]
"""Who of the agents reads a mailbox's mail (``mailboxes[].visibility``; supervisors
and admins read all): ``team`` every agent (a shared inbox); ``addressed`` the
agents in To/Cc and the sender; ``linked`` (the default) every agent when the message
is linked to a contact, else as ``addressed``."""


def mail_readers(
    session: Session,
    linked: bool,
    addressed: Sequence[str],
    sender: int | None = None,
    visibility: Visibility = "linked",
) -> MailReaders:
    """THE rule of who reads an e-mail, for the push and the API alike, by its mailbox's
    ``visibility``: every agent in a ``team`` mailbox, or when it is linked to a contact
    (contacts have no owner in the CRM) in a ``linked`` one; else the agents whose own
    address is in its To or Cc (``addressed``), and the agent who sent it."""
    if visibility == "team" or (linked and visibility == "linked"):
        return MailReaders(everyone=True)
    wanted = sorted({a.lower() for a in addressed if a})
    ids = set(session.scalars(select(Agent.id).where(func.lower(Agent.email).in_(wanted))))
    return MailReaders(agent_ids=frozenset(ids | ({sender} if sender is not None else set())))


def readers_extensions(session: Session, readers: MailReaders) -> frozenset[str]:
    """The extensions the push reaches ``readers`` at (when not everyone)."""
    rows = session.scalars(
        select(AgentExtension.extension).where(AgentExtension.agent_id.in_(readers.agent_ids))
    )
    return frozenset(rows)


def message_readers(
    session: Session, message: EmailMessage, visibility: Visibility = "linked"
) -> MailReaders:
    """:func:`mail_readers` of a stored message (its mailbox's ``visibility``)."""
    linked = session.scalar(select(exists().where(EmailContact.email_id == message.id)))
    addressed = [a.get("address", "") for a in (*message.to, *message.cc)]
    return mail_readers(session, bool(linked), addressed, message.agent_id, visibility)


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads through the API: an agent (id and own address) or, with
    ``everything``, a supervisor or admin."""

    agent_id: int
    email: str
    everything: bool
    visibility: Mapping[str, Visibility] = field(default_factory=dict)  # by mailbox name

    def visibility_of(self, mailbox: str) -> Visibility:
        """The visibility of ``mailbox`` (``linked`` when not configured)."""
        return self.visibility.get(mailbox, "linked")


async def may_read(session: AsyncSession, reader: Reader, message: EmailMessage) -> bool:
    """Whether ``reader`` may read ``message`` (:func:`mail_readers`)."""
    if reader.everything:
        return True
    visibility = reader.visibility_of(message.mailbox)
    readers = await session.run_sync(message_readers, message, visibility)
    return readers.admit(reader.agent_id)


def _maybe_readable(reader: Reader) -> ColumnElement[bool]:
    """A SQL condition true for every message ``reader`` may read (and, rarely, one more:
    an address that stands in a display name; :func:`may_read` decides those)."""
    address = reader.email.strip().lower()
    quoted = f'"{address}"'
    addressed = (
        or_(
            func.lower(cast(EmailMessage.to, String)).contains(quoted, autoescape=True),
            func.lower(cast(EmailMessage.cc, String)).contains(quoted, autoescape=True),
        )
        if address
        else false()
    )
    # an alias: the list may join EmailContact itself (?contact=), and the same table
    # in both would be correlated away
    links = aliased(EmailContact)
    linked: ColumnElement[bool] = exists().where(links.email_id == EmailMessage.id)
    kinds = {
        kind: [n for n, v in reader.visibility.items() if v == kind]
        for kind in ("team", "addressed")
    }
    if kinds["addressed"]:  # there, a contact does not make a message everyone's
        linked = and_(linked, EmailMessage.mailbox.not_in(kinds["addressed"]))
    team = EmailMessage.mailbox.in_(kinds["team"]) if kinds["team"] else false()
    return or_(team, linked, EmailMessage.agent_id == reader.agent_id, addressed)


@dataclass(frozen=True, slots=True)
class EmailFilter:
    """Query of ``GET /api/emails``; every field optional, newest first."""

    contact_id: int | None = None
    thread_id: str | None = None
    since: datetime | None = None
    limit: int = 50
    reader: Reader | None = None  # only what this reader may read (None: everything)
    before: Cursor | None = None  # the page after this cursor's message


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the newest-first list: (sort_at, id) of the last message of a page.
    Keyset paging: new arrivals never shift the next pages (no repeats, no gaps)."""

    at: datetime
    id: int

    def encode(self) -> str:
        """The opaque text form handed to clients."""
        return encode_cursor(self.at, self.id)

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """A cursor from :meth:`encode`; ValueError for anything else."""
        moment, (number,) = decode_cursor(raw, 1)
        if not number.isdigit():
            raise ValueError("not a cursor")
        return cls(moment, int(number))


@dataclass(frozen=True, slots=True)
class EmailPage:
    """One page of messages, and the cursor of the next one (None: this was the last)."""

    emails: list[EmailMessage]
    next: Cursor | None


async def list_emails(session: AsyncSession, query: EmailFilter) -> list[EmailMessage]:
    """Messages matching ``query``, newest first."""
    return (await page_emails(session, query)).emails


async def page_emails(session: AsyncSession, query: EmailFilter) -> EmailPage:
    """A page of the messages matching ``query``, newest first, after ``query.before``."""
    stmt = select(EmailMessage).order_by(EmailMessage.sort_at.desc(), EmailMessage.id.desc())
    if query.before is not None:
        at, last = query.before.at, query.before.id
        stmt = stmt.where(
            or_(EmailMessage.sort_at < at, and_(EmailMessage.sort_at == at, EmailMessage.id < last))
        )
    if query.reader is not None and not query.reader.everything:
        stmt = stmt.where(_maybe_readable(query.reader))
    if query.contact_id is not None:
        stmt = stmt.join(EmailContact).where(EmailContact.contact_id == query.contact_id)
    if query.thread_id is not None:
        stmt = stmt.where(EmailMessage.thread_id == query.thread_id)
    if query.since is not None:
        stmt = stmt.where(EmailMessage.sort_at >= query.since)
    rows = list(await session.scalars(stmt.limit(query.limit)))
    after = Cursor(rows[-1].sort_at, rows[-1].id) if len(rows) == query.limit else None
    if query.reader is not None:  # the SQL condition admits a few too many: may_read decides
        rows = [row for row in rows if await may_read(session, query.reader, row)]
    return EmailPage(rows, after)


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
    .order_by(EmailMessage.sort_at.desc(), EmailMessage.id.desc())
    .limit(bindparam("limit"))
)


def email_history(
    session: Session,
    contact_ids: Sequence[int],
    limit: int,
    before: HistoryCursor | None = None,
) -> list[HistoryItem]:
    """History source (``core.history.HistorySource``): the contacts' e-mails."""
    stmt = _HISTORY
    if before is not None:
        stmt = stmt.where(before.where("email", EmailMessage.sort_at, EmailMessage.id))
    rows = list(session.scalars(stmt, {"ids": list(contact_ids), "limit": limit}))
    return [
        HistoryItem("email", m.sort_at, data)
        for m, data in zip(rows, emails_json(session, rows), strict=True)
    ]
