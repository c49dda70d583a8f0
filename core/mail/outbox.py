"""The outbox: composing, queueing and the state machine of outgoing mail.

States: ``queued`` -> ``sending`` -> ``sent`` | ``failed``; a temporary
failure goes back to ``queued`` with ``next_attempt_at`` pushed out. The
message is composed (Message-ID included) once, when queued, and its raw
bytes stored: every attempt sends the same bytes, and the copy appended to
the Sent folder is recognised by its Message-ID when that folder syncs.

Restart guarantee: a message found in ``sending`` at start-up was handed to
SMTP when the daemon stopped, and whether the server accepted it is unknown.
It is queued again (at-least-once): nothing is lost; a duplicate is possible
only when the crash fell between the server's final "250" and our commit,
and it carries the same Message-ID, which mail clients use to fold duplicates.
It is queued again once: found in ``sending`` at the next start too, it is
marked ``failed`` (a message that stops the daemon must not stop it at every
start); see :func:`recover_interrupted`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage as MimeMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, getaddresses, make_msgid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.mail import MailItem, parse_message
from core.mail.blobs import BlobStore
from core.mail.models import EmailMessage, EmailRaw
from core.mail.store import Composed, StoreOptions, store_messages

STATES = ("queued", "sending", "sent", "failed")
#: The error of a message queued again at start-up (it was being sent when we stopped).
INTERRUPTED = "interrupted while sending (the daemon stopped); queued again"
GAVE_UP = "interrupted while sending at two stops in a row; not tried again (it may have been sent)"


@dataclass(frozen=True, slots=True)
class OutgoingAttachment:
    """A file to attach to an outgoing message."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Draft:
    """An e-mail an agent wants sent from ``mailbox`` (whose address is ``sender``, shown
    as ``sender_name`` when there is one)."""

    mailbox: str
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    sender_name: str = ""
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: tuple[OutgoingAttachment, ...] = ()
    in_reply_to: int | None = None


@dataclass(frozen=True, slots=True)
class Parent:
    """What a reply takes from the message it answers."""

    message_id: str | None
    references: tuple[str, ...] = ()


def compose(draft: Draft, parent: Parent | None, now: datetime) -> bytes:
    """The RFC 5322 bytes of ``draft``, with a new Message-ID and reply headers.

    CPU-bound (the stdlib folds every header field): call it off the event loop,
    as :func:`enqueue` does.
    """
    mime = MimeMessage(policy=SMTP)
    sender = formataddr((draft.sender_name, draft.sender)) if draft.sender_name else draft.sender
    mime["From"] = sender
    mime["To"] = ", ".join(draft.to)
    if draft.cc:
        mime["Cc"] = ", ".join(draft.cc)
    if draft.bcc:  # kept in our copy (as mail clients keep it in Sent); see split_bcc
        mime["Bcc"] = ", ".join(draft.bcc)
    mime["Subject"] = draft.subject
    mime["Date"] = format_datetime(now)
    mime["Message-ID"] = make_msgid(domain=draft.sender.rpartition("@")[2] or None)
    if parent is not None and parent.message_id:
        mime["In-Reply-To"] = f"<{parent.message_id}>"
        chain = [*parent.references, parent.message_id]
        mime["References"] = " ".join(f"<{ref}>" for ref in chain)
    mime.set_content(draft.text)
    if draft.html is not None:
        mime.add_alternative(draft.html, subtype="html")
    for part in draft.attachments:
        maintype, _, subtype = part.content_type.partition("/")
        mime.add_attachment(
            part.content, maintype=maintype, subtype=subtype or "octet-stream",
            filename=part.filename,
        )  # fmt: skip
    return mime.as_bytes()


async def enqueue(
    session: AsyncSession,
    draft: Draft,
    blobs: BlobStore,
    now: datetime,
    agent_id: int | None = None,
    options: StoreOptions | None = None,
    executor: Executor | None = None,
) -> EmailMessage:
    """Compose ``draft`` and store it as ``queued``; the SMTP worker takes it from there.

    Composing and parsing run in ``executor`` (a process pool keeps them from
    competing with the event loop for the GIL), else in a thread.
    """
    parent = await _parent(session, draft.in_reply_to)
    reply_to = Parent(parent.message_id, tuple(parent.references)) if parent else None
    loop = asyncio.get_running_loop()
    raw, item = await loop.run_in_executor(executor, _compose_and_parse, draft, reply_to, now)
    thread = parent.thread_id if parent else None
    composed = Composed(draft.mailbox, raw, item, now, agent_id, thread)
    [stored] = await session.run_sync(store_messages, [composed], blobs, options or StoreOptions())
    return await session.get_one(EmailMessage, stored.id)


_BCC_FIELD = re.compile(rb"bcc[ \t]*:", re.IGNORECASE)


def split_bcc(raw: bytes) -> tuple[bytes, tuple[str, ...]]:
    """``raw`` without its Bcc header field, and the addresses that field named.

    The stored message (and its copy in Sent) keeps Bcc; what goes over SMTP must
    not show it to the other recipients (RFC 5322 3.6.3): its addresses become
    envelope recipients only.
    """
    end = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if end < 0 else (raw[: end + 2], raw[end + 2 :])
    kept: list[bytes] = []
    taken: list[bytes] = []
    in_bcc = False
    for line in head.splitlines(keepends=True):
        if line[:1] not in (b" ", b"\t"):  # a new field; else a folded continuation
            in_bcc = _BCC_FIELD.match(line) is not None
        (taken if in_bcc else kept).append(line)
    if not taken:
        return raw, ()
    value = b"".join(taken).split(b":", 1)[1].decode("ascii", "replace")
    addresses = getaddresses([re.sub(r"\r?\n", "", value)])
    return b"".join(kept) + body, tuple(address for _, address in addresses if address)


def _compose_and_parse(
    draft: Draft, parent: Parent | None, now: datetime
) -> tuple[bytes, MailItem]:
    raw = compose(draft, parent, now)
    return raw, parse_message(raw)


async def _parent(session: AsyncSession, email_id: int | None) -> EmailMessage | None:
    if email_id is None:
        return None
    parent = await session.get(EmailMessage, email_id)
    if parent is None:
        raise NotFound(f"e-mail {email_id} not found")
    return parent


async def claim_next(session: AsyncSession, mailbox: str, now: datetime) -> EmailMessage | None:
    """Move the oldest due ``queued`` message of ``mailbox`` to ``sending`` and return it."""
    candidate = await session.scalar(
        select(EmailMessage.id)
        .where(
            EmailMessage.mailbox == mailbox,
            EmailMessage.state == "queued",
            EmailMessage.next_attempt_at <= now,
        )
        .order_by(EmailMessage.next_attempt_at, EmailMessage.id)
        .limit(1)
    )
    if candidate is None:
        return None
    claimed = await session.execute(
        update(EmailMessage)
        .where(EmailMessage.id == candidate, EmailMessage.state == "queued")
        .values(state="sending", attempts=EmailMessage.attempts + 1)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another process took it
    return await session.get(EmailMessage, candidate, populate_existing=True)


async def raw_or_none(session: AsyncSession, email_id: int) -> bytes | None:
    """The stored raw bytes of a message, if there are."""
    return await session.scalar(select(EmailRaw.raw).where(EmailRaw.email_id == email_id))


async def raw_of(session: AsyncSession, email_id: int) -> bytes:
    """The stored raw bytes of a message."""
    raw = await raw_or_none(session, email_id)
    if raw is None:
        raise NotFound(f"raw message of e-mail {email_id} not found")
    return raw


async def mark_sent(
    session: AsyncSession, email_id: int, now: datetime, note: str | None = None
) -> None:
    """The server accepted the message; it still has to be appended to Sent. ``note``:
    the recipients it refused, if it accepted only some."""
    await _set(session, email_id, state="sent", sent_at=now, error=note, sent_folder_pending=True)


async def mark_failed(session: AsyncSession, email_id: int, reason: str) -> None:
    """The server refused the message for good."""
    await _set(session, email_id, state="failed", error=reason[:2000], next_attempt_at=None)


async def retry_later(session: AsyncSession, email_id: int, reason: str, when: datetime) -> None:
    """A temporary failure: back to ``queued`` until ``when``."""
    await _set(session, email_id, state="queued", error=reason[:2000], next_attempt_at=when)


async def mark_appended(session: AsyncSession, email_id: int) -> None:
    """The copy is in the Sent folder."""
    await _set(session, email_id, sent_folder_pending=False)


async def _set(session: AsyncSession, email_id: int, **values: object) -> None:
    await session.execute(update(EmailMessage).where(EmailMessage.id == email_id).values(**values))


@dataclass(frozen=True, slots=True)
class Recovery:
    """What start-up did with the messages it found in ``sending``."""

    requeued: tuple[int, ...]
    failed: tuple[EmailMessage, ...]


async def recover_interrupted(session: AsyncSession, mailbox: str) -> Recovery:
    """At start-up: messages left in ``sending`` are queued again, once (see module docstring).

    A message found in ``sending`` whose error still says it was interrupted
    before was the one being sent at two stops in a row: it may be what stops the
    daemon, so it is marked failed instead of being tried again at every start.
    """
    rows = await session.scalars(
        select(EmailMessage).where(EmailMessage.mailbox == mailbox, EmailMessage.state == "sending")
    )
    requeued: list[int] = []
    failed: list[EmailMessage] = []
    for message in rows:
        if message.error == INTERRUPTED:
            message.state, message.error, message.next_attempt_at = "failed", GAVE_UP, None
            failed.append(message)
        else:
            message.state, message.error = "queued", INTERRUPTED
            requeued.append(message.id)
    return Recovery(tuple(requeued), tuple(failed))


async def next_due(session: AsyncSession, mailbox: str) -> datetime | None:
    """When the next queued message of ``mailbox`` is due, if any."""
    return await session.scalar(
        select(func.min(EmailMessage.next_attempt_at)).where(
            EmailMessage.mailbox == mailbox, EmailMessage.state == "queued"
        )
    )


async def pending_appends(session: AsyncSession, mailbox: str) -> Sequence[EmailMessage]:
    """Sent messages whose copy is not in the Sent folder yet."""
    rows = await session.scalars(
        select(EmailMessage).where(
            EmailMessage.mailbox == mailbox, EmailMessage.sent_folder_pending.is_(True)
        )
    )
    return rows.all()


async def outbox_counts(session: AsyncSession) -> dict[str, int]:
    """Number of outgoing messages per state (for the metrics gauge)."""
    rows = await session.execute(
        select(EmailMessage.state, func.count())
        .where(EmailMessage.state.is_not(None))
        .group_by(EmailMessage.state)
    )
    counts = dict.fromkeys(STATES, 0)
    counts.update({state: count for state, count in rows if state is not None})
    return counts
