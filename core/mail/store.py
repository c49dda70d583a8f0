"""Storing messages: the rules, and the single-message helpers the outbox shares.

A fetched copy (mailbox, folder, UIDVALIDITY, UID) may be stored any number
of times, and other copies of the same message too (``core.mail.batch``
applies these rules to a whole batch with a few queries):

1. a known location returns the stored message unchanged;
2. a message with the same Message-ID in the mailbox is the same message,
   unless its sender or subject differ (a Message-ID collision, as some
   broken clients produce): then, as for a message without Message-ID, the
   content hash decides (``dedupe_key``);
3. otherwise a new message is stored with its raw bytes, decoded headers,
   bodies, attachments (files in the blob store), thread and contacts.

The caller commits; the folder's last UID belongs in the same transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.mail import Address, Attachment, MailHeaders, MailItem
from core.mail.blobs import BlobStore
from core.mail.models import (
    EmailAttachment,
    EmailContact,
    EmailMessage,
    EmailRef,
)
from core.mail.threading import (
    ThreadCandidate,
    ThreadInput,
    ThreadPolicy,
    assign_thread,
    lookup_ids,
    subject_key,
)
from core.models import Contact, EmailAddress, utcnow
from core.search import search_key

_CANDIDATE_ROWS = 50


@dataclass(frozen=True, slots=True)
class Copy:
    """Where a fetched copy of a message sits on the IMAP server."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How messages are linked: own addresses are never contacts; unknown senders
    become contacts when ``create_unknown_contacts``."""

    own_addresses: frozenset[str] = frozenset()
    create_unknown_contacts: bool = False
    thread_policy: ThreadPolicy = field(default_factory=ThreadPolicy)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """The outcome of storing one copy: which message, and whether it is new."""

    id: int
    created: bool
    thread_id: str
    contact_ids: tuple[int, ...]


def dedupe_key(kind: str, value: str) -> str:
    """The unique key of a message in its mailbox: ``kind`` is ``id`` or ``hash``."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def new_message(mailbox: str, key: str, raw: bytes, item: MailItem) -> EmailMessage:
    """An unsaved message row for ``item`` (thread to be set by the caller)."""
    return EmailMessage(**message_values(mailbox, key, raw, item))


def message_values(
    mailbox: str,
    key: str,
    raw: bytes,
    item: MailItem | MailHeaders,
    key_of_subject: str | None = None,
) -> dict[str, Any]:
    """The columns of a new message row, by attribute name (thread to be set by the caller).

    Given only the ``MailHeaders`` of a message, its bodies and attachments are
    left for later (``body_parsed`` false, see ``core.mail.bodies``), unless
    the headers already could not be read: then there is nothing more to learn.
    ``key_of_subject``: ``subject_key`` of the item, if the caller has it already.
    """
    body = item if isinstance(item, MailItem) else None
    return {
        "mailbox": mailbox,
        "dedupe_key": key,
        "message_id": item.message_id,
        "in_reply_to": item.in_reply_to,
        "references": list(item.references),
        "content_hash": item.content_hash,
        "thread_id": "",
        "subject": item.subject or "",
        "subject_key": (
            subject_key(ThreadInput.of(item))[:255] if key_of_subject is None else key_of_subject
        ),
        "from_": addresses_json(item.from_),
        "to": addresses_json(item.to),
        "cc": addresses_json(item.cc),
        "reply_to": addresses_json(item.reply_to),
        "date": item.date,
        "sort_at": item.date or utcnow(),
        "text": body.text if body else None,
        "html": body.html if body else None,
        "size": len(raw),
        "parse_error": item.parse_error,
        "body_parsed": body is not None or item.parse_error is not None,
    }


def addresses_json(addresses: Iterable[Address]) -> list[dict[str, str]]:
    """Addresses as stored and shown: ``[{"name": ..., "address": ...}]``."""
    return [{"name": a.name, "address": a.address} for a in addresses]


def add_refs(session: AsyncSession, email_id: int, item: MailItem) -> None:
    """Index the ids this message is known by or refers to, for threading."""
    for ref in lookup_ids(ThreadInput.of(item)):
        session.add(EmailRef(email_id=email_id, ref=ref[:998]))


def add_attachments(
    session: AsyncSession | Session, email_id: int, item: MailItem, blobs: BlobStore
) -> None:
    """Attachment rows; contents go to the blob store (truncated ones have none)."""
    for n, part in enumerate(item.attachments):
        if not part.truncated:
            blobs.put(part.content, part.sha256)
        session.add(EmailAttachment(**attachment_values(email_id, n, part)))


def attachment_values(email_id: int, n: int, part: Attachment) -> dict[str, Any]:
    """The columns of attachment row ``n`` of a message."""
    return {
        "email_id": email_id,
        "n": n,
        "filename": (part.filename or "")[:500] or None,
        "content_type": part.content_type[:200],
        "size": part.size,
        "sha256": part.sha256,
        "inline": part.inline,
        "content_id": (part.content_id or "")[:500] or None,
        "truncated": part.truncated,
    }


async def choose_thread(session: AsyncSession, item: MailItem, policy: ThreadPolicy) -> str:
    """The thread of ``item``: by references first, then subject and participants."""
    msg = ThreadInput.of(item)
    ids = lookup_ids(msg)
    known: dict[str, str] = {}
    if ids:
        rows = await session.execute(
            select(EmailRef.ref, EmailMessage.thread_id)
            .join(EmailMessage, EmailMessage.id == EmailRef.email_id)
            .where(EmailRef.ref.in_(ids))
        )
        known = {ref: thread for ref, thread in rows}
    key = subject_key(msg, policy)
    candidates = await _candidates(session, key[:255]) if key and not known else []
    return assign_thread(msg, known, candidates, policy).thread_id[:998]


async def _candidates(session: AsyncSession, key: str) -> list[ThreadCandidate]:
    rows = await session.scalars(
        select(EmailMessage)
        .where(EmailMessage.subject_key == key)
        .order_by(EmailMessage.sort_at.desc())
        .limit(_CANDIDATE_ROWS)
    )
    threads: dict[str, list[EmailMessage]] = {}
    for row in rows:
        threads.setdefault(row.thread_id, []).append(row)
    return [_candidate(thread_id, key, members) for thread_id, members in threads.items()]


def _candidate(thread_id: str, key: str, members: Sequence[EmailMessage]) -> ThreadCandidate:
    people = {a["address"] for m in members for a in (*m.from_, *m.to, *m.cc)}
    dates: list[datetime] = [m.sort_at for m in members]
    return ThreadCandidate(thread_id, key, frozenset(people), min(dates), max(dates))


async def link_contacts(
    session: AsyncSession, email_id: int, item: MailItem, options: StoreOptions
) -> tuple[int, ...]:
    """Link the message to the contacts of its From/To/Cc/Reply-To addresses."""
    people = (*item.from_, *item.to, *item.cc, *item.reply_to)
    wanted = {a.address for a in people if a.address} - options.own_addresses
    if not wanted:
        return ()
    rows = await session.execute(
        select(EmailAddress.address, EmailAddress.contact_id).where(
            EmailAddress.address.in_(wanted)
        )
    )
    found = {address: contact_id for address, contact_id in rows}
    contact_ids = set(found.values())
    if options.create_unknown_contacts:
        contact_ids |= await session.run_sync(create_contacts, item.from_, options, found)
    for contact_id in sorted(contact_ids):
        session.add(EmailContact(email_id=email_id, contact_id=contact_id))
    return tuple(sorted(contact_ids))


def create_contacts(
    session: Session,
    senders: Sequence[Address],
    options: StoreOptions,
    found: dict[str, int],
) -> set[int]:
    """Create a contact for each sender not in ``found`` (and not our own); updates ``found``."""
    created: set[int] = set()
    for sender in senders:
        address = sender.address
        if not address or address in found or address in options.own_addresses:
            continue
        name = (sender.name or sender.address)[:200]
        contact = Contact(display_name=name, search_key=search_key([name]))
        contact.emails.append(EmailAddress(address=address))
        session.add(contact)
        session.flush()
        found[address] = contact.id
        created.add(contact.id)
    return created
