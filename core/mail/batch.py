"""Storing a batch of fetched copies with a handful of queries, whatever the batch size.

The rules are those of :mod:`core.mail.store`; this module only makes them
cheap: everything a batch needs to know (copies already located, messages
with the batch's dedupe keys, threads of the ids it refers to, subject
candidates, contacts of its addresses) is loaded up front in one query each,
messages created earlier in the same batch are registered in the same maps,
and the rows of each table are inserted with one executemany (not the ORM
unit of work, which costs more than the rest of the sync together; on SQLite
not even SQLAlchemy's per-row parameter processing: ``core.mail.rows``).

A fetched copy may come with its whole parse (``MailItem``) or with its
headers only (``MailHeaders``): then the message is stored, deduplicated,
threaded and linked at once, and its bodies and attachments follow
(``core.mail.bodies``).

The work is synchronous (``store_copies`` on an ORM ``Session``), so that the
mail sync runs a whole batch, its folder state included, in one hop on a
database thread (``core.dbthread.DbWorker``); ``store_batch`` is the same on
an ``AsyncSession``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.mail import MailHeaders, MailItem
from core.mail.blobs import BlobStore
from core.mail.models import EmailContact, EmailLocation, EmailMessage, EmailRaw, EmailRef
from core.mail.rows import insert_rows, is_sqlite, keyed_ids
from core.mail.store import (
    Copy,
    StoredMessage,
    StoreOptions,
    add_attachments,
    create_contacts,
    dedupe_key,
    message_values,
)
from core.mail.threading import (
    ThreadCandidate,
    ThreadInput,
    assign_thread,
    lookup_ids,
    subject_key,
)
from core.models import Base, EmailAddress


@dataclass(frozen=True, slots=True)
class Fetched:
    """One fetched copy: where it is, its bytes, and what the parser made of it
    (``MailHeaders`` alone: the body is parsed later)."""

    copy: Copy
    raw: bytes
    item: MailItem | MailHeaders


@dataclass(frozen=True, slots=True)
class _Sample:
    thread_id: str
    participants: frozenset[str]
    at: datetime


@dataclass(slots=True)
class _Row:
    """What a batch needs of a stored message, or of one it is about to insert (id 0)."""

    dedupe_key: str
    content_hash: str
    senders: list[str]
    subject: str
    thread_id: str
    id: int = 0


@dataclass(frozen=True, slots=True)
class _Placed:
    row: _Row
    created: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    """A fetched copy and what threading derives from it, computed once."""

    fetched: Fetched
    thread: ThreadInput
    ids: tuple[str, ...]
    subject_key: str  # under the options' thread policy
    stored_key: str  # under the default policy, as the column holds it
    id_key: str  # dedupe key by Message-ID ("" without one)
    hash_key: str  # dedupe key by content hash


@dataclass(frozen=True, slots=True)
class _New:
    row: _Row
    entry: _Entry
    values: dict[str, Any]


@dataclass
class _Known:
    located: dict[tuple[str, int], _Row] = field(default_factory=dict)
    by_key: dict[str, _Row] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, list[_Sample]] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)


_ROW_COLUMNS = (
    EmailMessage.id,
    EmailMessage.dedupe_key,
    EmailMessage.content_hash,
    EmailMessage.from_,
    EmailMessage.subject,
    EmailMessage.thread_id,
)


def _row(
    id_: int, key: str, digest: str, from_: list[dict[str, str]], subject: str, thread: str
) -> _Row:
    return _Row(key, digest, sorted(a["address"] for a in from_), subject, thread, id_)


async def store_message(
    session: AsyncSession,
    copy: Copy,
    raw: bytes,
    item: MailItem | MailHeaders,
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
    return await session.run_sync(store_copies, batch, blobs, options)


def store_copies(
    session: Session,
    batch: Sequence[Fetched],
    blobs: BlobStore,
    options: StoreOptions,
    *,
    unlocated: bool = False,
) -> list[StoredMessage]:
    """``store_batch`` on a synchronous session (the caller commits).

    ``unlocated``: the caller knows that no copy of the batch has a location yet
    (the mail sync: every UID is above the folder's last committed UID), which
    saves looking them up.
    """
    entries = [_entry(fetched, options) for fetched in batch]
    known = _load(session, entries, options, unlocated)
    created: list[_New] = []
    results = [_place(known, entry, options, created) for entry in entries]
    contacts: dict[int, tuple[int, ...]] = {}
    if created:
        _insert_messages(session, created)
        _insert_rows(session, created, blobs)
        contacts = _link(session, known, created, options)
    locations = [
        _location(result.row.id, fetched.copy)
        for fetched, result in zip(batch, results, strict=True)
        if isinstance(result, _Placed)
    ]
    insert_rows(session, _table(EmailLocation), locations)
    return [_result(r, contacts) for r in results]


def _entry(fetched: Fetched, options: StoreOptions) -> _Entry:
    thread = ThreadInput.of(fetched.item)
    key = subject_key(thread, options.thread_policy)[:255]
    stored = key if options.thread_policy.strip_list_tags else subject_key(thread)[:255]
    item = fetched.item
    id_key = dedupe_key("id", item.message_id) if item.message_id else ""
    hash_key = dedupe_key("hash", item.content_hash)
    return _Entry(fetched, thread, lookup_ids(thread), key, stored, id_key, hash_key)


def _place(
    known: _Known, entry: _Entry, options: StoreOptions, created: list[_New]
) -> StoredMessage | _Placed:
    """The stored message this copy is (an old location: StoredMessage), else the
    message it must be located at (a duplicate, or a new one registered in ``known``)."""
    copy = entry.fetched.copy
    at = known.located.get((copy.folder, copy.uid))
    if at is not None:
        return StoredMessage(at.id, False, at.thread_id, ())
    duplicate = _duplicate(known, entry)
    if duplicate is not None:
        known.located[(copy.folder, copy.uid)] = duplicate
        return _Placed(duplicate, False)
    new = _new(known, entry, options)
    created.append(new)
    known.located[(copy.folder, copy.uid)] = new.row
    return _Placed(new.row, True)


def _duplicate(known: _Known, entry: _Entry) -> _Row | None:
    if entry.id_key:
        same_id = known.by_key.get(entry.id_key)
        if same_id is not None and _same_message(same_id, entry.fetched.item):
            return same_id
    return known.by_key.get(entry.hash_key)


def _same_message(stored: _Row, item: MailItem | MailHeaders) -> bool:
    if stored.content_hash == item.content_hash:
        return True
    same_senders = stored.senders == sorted(a.address for a in item.from_)
    return same_senders and stored.subject == (item.subject or "")


def _new(known: _Known, entry: _Entry, options: StoreOptions) -> _New:
    fetched, item = entry.fetched, entry.fetched.item
    key = entry.id_key
    if not key or key in known.by_key:
        key = entry.hash_key
    values = message_values(fetched.copy.mailbox, key, fetched.raw, item, entry.stored_key)
    own = options.own_addresses
    values["direction"] = "out" if any(a.address in own for a in item.from_) else "in"
    values["thread_id"] = _thread(known, entry, options)
    row = _row(0, key, item.content_hash, values["from_"], values["subject"], values["thread_id"])
    known.by_key[key] = row
    _register_thread(known, values, entry)
    return _New(row, entry, values)


def _thread(known: _Known, entry: _Entry, options: StoreOptions) -> str:
    msg, key = entry.thread, entry.subject_key
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


def _register_thread(known: _Known, values: dict[str, Any], entry: _Entry) -> None:
    for ref in entry.ids:
        known.threads.setdefault(ref, values["thread_id"])
    if values["subject_key"]:
        sample = _Sample(values["thread_id"], entry.thread.participants, values["sort_at"])
        known.subjects.setdefault(values["subject_key"], []).append(sample)


def _insert_messages(session: Session, created: list[_New]) -> None:
    """Insert the new messages and learn their ids (by dedupe key, unique per mailbox)."""
    messages = _table(EmailMessage)
    rows = [_columns(new.values) for new in created]
    if is_sqlite(session):
        insert_rows(session, messages, rows)
        mailbox = created[0].values["mailbox"]
        ids = keyed_ids(session, messages, mailbox, [new.row.dedupe_key for new in created])
    else:
        returned = session.execute(
            insert(messages).returning(messages.c.id, messages.c.dedupe_key), rows
        )
        ids = {key: id_ for id_, key in returned}
    for new in created:
        new.row.id = ids[new.row.dedupe_key]


def _table(model: type[Base]) -> Table:
    """A model's table: Core inserts skip the ORM's per-row bookkeeping."""
    return cast(Table, model.__table__)


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Attribute names to column names (only ``from_`` differs)."""
    columns = dict(values)
    columns["from"] = columns.pop("from_")
    return columns


def _insert_rows(session: Session, created: list[_New], blobs: BlobStore) -> None:
    """Raw bytes, threading refs and (for fully parsed messages) attachments."""
    raws = [{"email_id": new.row.id, "raw": new.entry.fetched.raw} for new in created]
    insert_rows(session, _table(EmailRaw), raws)
    refs = [{"email_id": new.row.id, "ref": ref[:998]} for new in created for ref in new.entry.ids]
    insert_rows(session, _table(EmailRef), refs)
    for new in created:
        if isinstance(new.entry.fetched.item, MailItem):
            add_attachments(session, new.row.id, new.entry.fetched.item, blobs)


def _location(email_id: int, copy: Copy) -> dict[str, Any]:
    return {
        "email_id": email_id,
        "mailbox": copy.mailbox,
        "folder": copy.folder,
        "uidvalidity": copy.uidvalidity,
        "uid": copy.uid,
    }


def _link(
    session: Session, known: _Known, created: list[_New], options: StoreOptions
) -> dict[int, tuple[int, ...]]:
    """Link new messages to contacts; returns message id -> contact ids."""
    linked: dict[int, tuple[int, ...]] = {}
    for new in created:
        item = new.entry.fetched.item
        if options.create_unknown_contacts:
            create_contacts(session, item.from_, options, known.contacts)
        people = (*item.from_, *item.to, *item.cc, *item.reply_to)
        ids = {known.contacts[a.address] for a in people if a.address in known.contacts}
        linked[new.row.id] = tuple(sorted(ids))
    links = [{"email_id": e, "contact_id": c} for e, ids in linked.items() for c in ids]
    insert_rows(session, _table(EmailContact), links)
    return linked


def _result(result: StoredMessage | _Placed, contacts: dict[int, tuple[int, ...]]) -> StoredMessage:
    if isinstance(result, StoredMessage):
        return result
    row = result.row
    linked = contacts.get(row.id, ()) if result.created else ()
    return StoredMessage(row.id, result.created, row.thread_id, linked)


def _load(
    session: Session, entries: Sequence[_Entry], options: StoreOptions, unlocated: bool
) -> _Known:
    known = _Known()
    if not entries:
        return known
    batch = [entry.fetched for entry in entries]
    mailbox = batch[0].copy.mailbox
    if not unlocated:
        _load_located(session, batch, known)
    keys = {entry.hash_key for entry in entries} | {entry.id_key for entry in entries} - {""}
    rows = session.execute(
        select(*_ROW_COLUMNS).where(
            EmailMessage.mailbox == mailbox, EmailMessage.dedupe_key.in_(keys)
        )
    )
    known.by_key = {row.dedupe_key: row for row in (_row(*r) for r in rows)}
    _load_threads(session, entries, known)
    _load_contacts(session, batch, known, options)
    return known


def _load_located(session: Session, batch: Sequence[Fetched], known: _Known) -> None:
    first = batch[0].copy
    pairs = {(f.copy.folder, f.copy.uid) for f in batch}
    rows = session.execute(
        select(EmailLocation.folder, EmailLocation.uid, *_ROW_COLUMNS)
        .join(EmailMessage, EmailMessage.id == EmailLocation.email_id)
        .where(
            EmailLocation.mailbox == first.mailbox,
            EmailLocation.uidvalidity.in_({f.copy.uidvalidity for f in batch}),
            tuple_(EmailLocation.folder, EmailLocation.uid).in_(pairs),
        )
    )
    known.located = {(r[0], r[1]): _row(*r[2:]) for r in rows}


def _load_threads(session: Session, entries: Sequence[_Entry], known: _Known) -> None:
    ids = {ref for entry in entries for ref in entry.ids}
    if ids:
        rows = session.execute(
            select(EmailRef.ref, EmailMessage.thread_id)
            .join(EmailMessage, EmailMessage.id == EmailRef.email_id)
            .where(EmailRef.ref.in_(ids))
        )
        known.threads = {ref: thread for ref, thread in rows}
    keys = {entry.subject_key for entry in entries} - {""}
    if keys:
        samples = session.execute(
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


def _load_contacts(
    session: Session, batch: Sequence[Fetched], known: _Known, options: StoreOptions
) -> None:
    people = {
        a.address
        for f in batch
        for a in (*f.item.from_, *f.item.to, *f.item.cc, *f.item.reply_to)
        if a.address
    } - options.own_addresses
    if people:
        rows = session.execute(
            select(EmailAddress.address, EmailAddress.contact_id).where(
                EmailAddress.address.in_(people)
            )
        )
        known.contacts = {address: contact_id for address, contact_id in rows}
