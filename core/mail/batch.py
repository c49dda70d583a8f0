"""Storing a batch of fetched copies with a handful of queries, whatever the batch size.

The rules are those of :mod:`core.mail.store`; this module only makes them
cheap: everything a batch needs to know (copies already located, messages
with the batch's dedupe keys, threads of the ids it refers to, subject
candidates, contacts of its addresses) is loaded up front in one query each,
messages created earlier in the same batch are registered in the same maps,
and all rows are inserted together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from core.mail import MailItem
from core.mail.blobs import BlobStore
from core.mail.models import EmailContact, EmailLocation, EmailMessage, EmailRaw, EmailRef
from core.mail.store import (
    Copy,
    StoredMessage,
    StoreOptions,
    add_attachments,
    create_contacts,
    dedupe_key,
    new_message,
)
from core.mail.threading import (
    ThreadCandidate,
    ThreadInput,
    assign_thread,
    lookup_ids,
    subject_key,
)
from core.models import EmailAddress


@dataclass(frozen=True, slots=True)
class Fetched:
    """One fetched copy: where it is, its bytes, and what the parser made of it."""

    copy: Copy
    raw: bytes
    item: MailItem


@dataclass(frozen=True, slots=True)
class _Sample:
    thread_id: str
    participants: frozenset[str]
    at: datetime


@dataclass(frozen=True, slots=True)
class _Placed:
    message: EmailMessage
    created: bool


@dataclass
class _Known:
    located: dict[tuple[str, int], EmailMessage] = field(default_factory=dict)
    by_key: dict[str, EmailMessage] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, list[_Sample]] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)


_LIGHT = load_only(
    EmailMessage.id,
    EmailMessage.dedupe_key,
    EmailMessage.content_hash,
    EmailMessage.from_,
    EmailMessage.subject,
    EmailMessage.thread_id,
)


async def store_message(
    session: AsyncSession,
    copy: Copy,
    raw: bytes,
    item: MailItem,
    blobs: BlobStore,
    options: StoreOptions | None = None,
) -> StoredMessage:
    """Store one fetched copy idempotently (a batch of one)."""
    batch = [Fetched(copy, raw, item)]
    return (await store_batch(session, batch, blobs, options or StoreOptions()))[0]


async def store_batch(
    session: AsyncSession,
    batch: Sequence[Fetched],
    blobs: BlobStore,
    options: StoreOptions,
) -> list[StoredMessage]:
    """Store every copy of ``batch`` idempotently; results in the batch's order."""
    known = await _load(session, batch, options)
    results: list[StoredMessage | _Placed] = []
    created: list[tuple[EmailMessage, Fetched]] = []
    with session.no_autoflush:
        for fetched in batch:
            results.append(_place(known, fetched, options, created))
        session.add_all(message for message, _ in created)
        await session.flush()
        for message, fetched in created:
            _add_rows(session, message, fetched, blobs)
        contacts = await _link(session, known, created, options)
        for fetched, result in zip(batch, results, strict=True):
            if isinstance(result, _Placed):
                session.add(_location(result.message.id, fetched.copy))
    return [_result(r, contacts) for r in results]


def _place(
    known: _Known,
    fetched: Fetched,
    options: StoreOptions,
    created: list[tuple[EmailMessage, Fetched]],
) -> StoredMessage | _Placed:
    """The stored message this copy is (an old location: StoredMessage), else the
    message it must be located at (a duplicate, or a new one registered in ``known``)."""
    copy, item = fetched.copy, fetched.item
    at = known.located.get((copy.folder, copy.uid))
    if at is not None:
        return StoredMessage(at.id, False, at.thread_id, ())
    duplicate = _duplicate(known, item)
    if duplicate is not None:
        known.located[(copy.folder, copy.uid)] = duplicate
        return _Placed(duplicate, False)
    message = _new(known, fetched, options)
    created.append((message, fetched))
    known.located[(copy.folder, copy.uid)] = message
    return _Placed(message, True)


def _duplicate(known: _Known, item: MailItem) -> EmailMessage | None:
    if item.message_id:
        same_id = known.by_key.get(dedupe_key("id", item.message_id))
        if same_id is not None and _same_message(same_id, item):
            return same_id
    return known.by_key.get(dedupe_key("hash", item.content_hash))


def _same_message(stored: EmailMessage, item: MailItem) -> bool:
    if stored.content_hash == item.content_hash:
        return True
    senders = sorted(a["address"] for a in stored.from_)
    same_senders = senders == sorted(a.address for a in item.from_)
    return same_senders and stored.subject == (item.subject or "")


def _new(known: _Known, fetched: Fetched, options: StoreOptions) -> EmailMessage:
    item = fetched.item
    key = dedupe_key("id", item.message_id) if item.message_id else ""
    if not key or key in known.by_key:
        key = dedupe_key("hash", item.content_hash)
    message = new_message(fetched.copy.mailbox, key, fetched.raw, item)
    own = options.own_addresses
    message.direction = "out" if any(a.address in own for a in item.from_) else "in"
    message.thread_id = _thread(known, item, options)
    known.by_key[key] = message
    _register_thread(known, message, item)
    return message


def _thread(known: _Known, item: MailItem, options: StoreOptions) -> str:
    msg = ThreadInput.of(item)
    key = subject_key(msg, options.thread_policy)[:255]
    by_thread: dict[str, list[_Sample]] = {}
    for sample in known.subjects.get(key, []) if key else []:
        by_thread.setdefault(sample.thread_id, []).append(sample)
    candidates = [
        ThreadCandidate(
            thread_id,
            key,
            frozenset().union(*(s.participants for s in samples)),
            min(s.at for s in samples),
            max(s.at for s in samples),
        )
        for thread_id, samples in by_thread.items()
    ]
    decision = assign_thread(msg, known.threads, candidates, options.thread_policy)
    return decision.thread_id[:998]


def _register_thread(known: _Known, message: EmailMessage, item: MailItem) -> None:
    msg = ThreadInput.of(item)
    for ref in lookup_ids(msg):
        known.threads.setdefault(ref, message.thread_id)
    if message.subject_key:
        sample = _Sample(message.thread_id, msg.participants, message.sort_at)
        known.subjects.setdefault(message.subject_key, []).append(sample)


def _add_rows(
    session: AsyncSession, message: EmailMessage, fetched: Fetched, blobs: BlobStore
) -> None:
    session.add(EmailRaw(email_id=message.id, raw=fetched.raw))
    for ref in lookup_ids(ThreadInput.of(fetched.item)):
        session.add(EmailRef(email_id=message.id, ref=ref[:998]))
    add_attachments(session, message.id, fetched.item, blobs)


def _location(email_id: int, copy: Copy) -> EmailLocation:
    return EmailLocation(
        email_id=email_id,
        mailbox=copy.mailbox,
        folder=copy.folder,
        uidvalidity=copy.uidvalidity,
        uid=copy.uid,
    )


async def _link(
    session: AsyncSession,
    known: _Known,
    created: list[tuple[EmailMessage, Fetched]],
    options: StoreOptions,
) -> dict[int, tuple[int, ...]]:
    """Link new messages to contacts; returns message id -> contact ids."""
    linked: dict[int, tuple[int, ...]] = {}
    for message, fetched in created:
        item = fetched.item
        if options.create_unknown_contacts:
            await create_contacts(session, item.from_, options, known.contacts)
        people = (*item.from_, *item.to, *item.cc, *item.reply_to)
        ids = {known.contacts[a.address] for a in people if a.address in known.contacts}
        linked[message.id] = tuple(sorted(ids))
        session.add_all(EmailContact(email_id=message.id, contact_id=c) for c in sorted(ids))
    return linked


def _result(result: StoredMessage | _Placed, contacts: dict[int, tuple[int, ...]]) -> StoredMessage:
    if isinstance(result, StoredMessage):
        return result
    message = result.message
    linked = contacts.get(message.id, ()) if result.created else ()
    return StoredMessage(message.id, result.created, message.thread_id, linked)


async def _load(session: AsyncSession, batch: Sequence[Fetched], options: StoreOptions) -> _Known:
    known = _Known()
    if not batch:
        return known
    mailbox = batch[0].copy.mailbox
    await _load_located(session, batch, known)
    keys = {dedupe_key("hash", f.item.content_hash) for f in batch}
    keys |= {dedupe_key("id", f.item.message_id) for f in batch if f.item.message_id}
    rows = await session.scalars(
        select(EmailMessage)
        .options(_LIGHT)
        .where(EmailMessage.mailbox == mailbox, EmailMessage.dedupe_key.in_(keys))
    )
    known.by_key = {row.dedupe_key: row for row in rows}
    await _load_threads(session, batch, known, options)
    await _load_contacts(session, batch, known, options)
    return known


async def _load_located(session: AsyncSession, batch: Sequence[Fetched], known: _Known) -> None:
    first = batch[0].copy
    pairs = {(f.copy.folder, f.copy.uid) for f in batch}
    rows = await session.execute(
        select(EmailLocation.folder, EmailLocation.uid, EmailMessage)
        .join(EmailMessage, EmailMessage.id == EmailLocation.email_id)
        .options(_LIGHT)
        .where(
            EmailLocation.mailbox == first.mailbox,
            EmailLocation.uidvalidity.in_({f.copy.uidvalidity for f in batch}),
            tuple_(EmailLocation.folder, EmailLocation.uid).in_(pairs),
        )
    )
    known.located = {(folder, uid): message for folder, uid, message in rows}


async def _load_threads(
    session: AsyncSession, batch: Sequence[Fetched], known: _Known, options: StoreOptions
) -> None:
    inputs = [ThreadInput.of(f.item) for f in batch]
    ids = {ref for msg in inputs for ref in lookup_ids(msg)}
    if ids:
        rows = await session.execute(
            select(EmailRef.ref, EmailMessage.thread_id)
            .join(EmailMessage, EmailMessage.id == EmailRef.email_id)
            .where(EmailRef.ref.in_(ids))
        )
        known.threads = {ref: thread for ref, thread in rows}
    keys = {subject_key(msg, options.thread_policy)[:255] for msg in inputs} - {""}
    if keys:
        samples = await session.execute(
            select(
                EmailMessage.subject_key,
                EmailMessage.thread_id,
                EmailMessage.from_,
                EmailMessage.to,
                EmailMessage.cc,
                EmailMessage.sort_at,
            ).where(EmailMessage.subject_key.in_(keys))
        )
        for key, thread_id, from_, to, cc, at in samples:
            people = frozenset(a["address"] for a in (*from_, *to, *cc))
            known.subjects.setdefault(key, []).append(_Sample(thread_id, people, at))


async def _load_contacts(
    session: AsyncSession, batch: Sequence[Fetched], known: _Known, options: StoreOptions
) -> None:
    people = {
        a.address
        for f in batch
        for a in (*f.item.from_, *f.item.to, *f.item.cc, *f.item.reply_to)
        if a.address
    } - options.own_addresses
    if people:
        rows = await session.execute(
            select(EmailAddress.address, EmailAddress.contact_id).where(
                EmailAddress.address.in_(people)
            )
        )
        known.contacts = {address: contact_id for address, contact_id in rows}
