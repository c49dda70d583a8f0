"""Storing messages: the one path for mail the sync fetched and mail the outbox queues.

:func:`store_messages` stores a batch with a handful of queries, whatever its
size. A fetched copy (mailbox, folder, UIDVALIDITY, UID) may be stored any
number of times, and other copies of the same message too:

1. a known location returns the stored message unchanged;
2. a message with the same Message-ID in the mailbox is the same message,
   unless its sender or subject differ (a Message-ID collision, as some
   broken clients produce): then, as for a message without Message-ID, the
   content hash decides (``dedupe_key``);
3. otherwise a new message is stored with its raw bytes, decoded headers,
   bodies and attachments (files in the blob store) when parsed, thread
   (:mod:`core.mail.threads`) and contacts.

A message the outbox queues (:class:`Composed`) follows the same rules
without a location, and is stored as outgoing and ``queued``.

Everything a batch needs to know is loaded up front (:mod:`core.mail.known`),
messages created earlier in the same batch are registered in the same maps,
and the rows of each table are inserted with one executemany of a Core
insert (not the ORM unit of work, which costs more than the rest of the sync
together); the new messages' ids come back by RETURNING.

A fetched copy may come with its whole parse (``MailItem``) or with its
headers only (``MailHeaders``): then its bodies and attachments follow
(:mod:`core.mail.bodies`).

The work is synchronous (on an ORM ``Session``), so that the mail sync runs a
whole batch, its folder state included, in one hop on a database thread
(``core.dbthread.DbWorker``); on an ``AsyncSession`` call it through
``run_sync``. The caller commits; the folder's last UID belongs in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from core.mail.addresses import Address
from core.mail.blobs import BlobStore
from core.mail.columns import attachment_values, dedupe_key, message_values
from core.mail.headers import MailHeaders
from core.mail.known import Known, KnownRow, Lookups, SubjectSample, known_row, load_known, people
from core.mail.models import (
    EmailAttachment,
    EmailContact,
    EmailLocation,
    EmailMessage,
    EmailRaw,
    EmailRef,
)
from core.mail.parse import MailItem
from core.mail.queries import Visibility
from core.mail.threads import ThreadInput, ThreadPolicy, assign_thread, lookup_ids, subject_key
from core.models import Base, Contact, EmailAddress
from core.search import search_key


@dataclass(frozen=True, slots=True)
class Copy:
    """Where a fetched copy of a message sits on the IMAP server."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True, slots=True)
class Fetched:
    """One fetched copy: where it is, its bytes, and what the parser made of it
    (``MailHeaders`` alone: the body is parsed later)."""

    copy: Copy
    raw: bytes
    item: MailItem | MailHeaders


@dataclass(frozen=True, slots=True)
class Composed:
    """A message the outbox queues in ``mailbox``: due at ``due``, written by
    ``agent_id``; in ``thread_id`` when it answers a stored message (else threaded by
    the rules)."""

    mailbox: str
    raw: bytes
    item: MailItem
    due: datetime
    agent_id: int | None = None
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How messages are linked: own addresses are never contacts; unknown senders
    become contacts when ``create_unknown_contacts``."""

    own_addresses: frozenset[str] = frozenset()
    create_unknown_contacts: bool = False
    thread_policy: ThreadPolicy = field(default_factory=ThreadPolicy)
    visibility: Visibility = "linked"  # who reads its mail (core.mail.queries.mail_readers)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """The outcome of storing one message: which message, and whether it is new."""

    id: int
    created: bool
    thread_id: str
    contact_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Placed:
    row: KnownRow
    created: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    """A message to store and what threading derives from it, computed once."""

    message: Fetched | Composed
    thread: ThreadInput
    ids: tuple[str, ...]
    subject_key: str  # under the options' thread policy
    stored_key: str  # under the default policy, as the column holds it
    id_key: str  # dedupe key by Message-ID ("" without one)
    hash_key: str  # dedupe key by content hash

    @property
    def mailbox(self) -> str:
        message = self.message
        return message.copy.mailbox if isinstance(message, Fetched) else message.mailbox

    @property
    def located_at(self) -> tuple[str, int] | None:
        """(folder, UID) of a fetched copy."""
        message = self.message
        return (message.copy.folder, message.copy.uid) if isinstance(message, Fetched) else None


@dataclass(frozen=True, slots=True)
class _New:
    row: KnownRow
    entry: _Entry
    values: dict[str, Any]


def store_messages(
    session: Session,
    batch: Sequence[Fetched | Composed],
    blobs: BlobStore,
    options: StoreOptions,
    *,
    unlocated: bool = False,
) -> list[StoredMessage]:
    """Store every message of ``batch`` (one mailbox) idempotently; results in the
    batch's order (the caller commits).

    ``unlocated``: the caller knows that no copy of the batch has a location yet
    (the mail sync: every UID is above the folder's last committed UID), which
    saves looking them up.
    """
    if not batch:
        return []
    entries = [_entry(message, options) for message in batch]
    known = load_known(session, _lookups(entries, options, unlocated))
    created: list[_New] = []
    results = [_place(known, entry, options, created) for entry in entries]
    contacts: dict[int, tuple[int, ...]] = {}
    if created:
        _insert_messages(session, created)
        _insert_rows(session, created, blobs)
        contacts = _link(session, known, created, options)
    locations = [
        _location(result.row.id, message.copy)
        for message, result in zip(batch, results, strict=True)
        if isinstance(result, _Placed) and isinstance(message, Fetched)
    ]
    insert_rows(session, _table(EmailLocation), locations)
    return [_result(r, contacts) for r in results]


def _entry(message: Fetched | Composed, options: StoreOptions) -> _Entry:
    item = message.item
    thread = ThreadInput.of(item)
    key = subject_key(thread, options.thread_policy)[:255]
    stored = key if options.thread_policy.strip_list_tags else subject_key(thread)[:255]
    id_key = dedupe_key("id", item.message_id) if item.message_id else ""
    hash_key = dedupe_key("hash", item.content_hash)
    return _Entry(message, thread, lookup_ids(thread), key, stored, id_key, hash_key)


def _lookups(entries: Sequence[_Entry], options: StoreOptions, unlocated: bool) -> Lookups:
    copies = [e.message.copy for e in entries if isinstance(e.message, Fetched)]
    addresses: set[str] = set()
    for entry in entries:
        item = entry.message.item
        addresses |= people((*item.from_, *item.to, *item.cc, *item.reply_to))
    return Lookups(
        mailbox=entries[0].mailbox,
        locations=[] if unlocated else [(c.folder, c.uidvalidity, c.uid) for c in copies],
        dedupe_keys={e.hash_key for e in entries} | {e.id_key for e in entries} - {""},
        refs={ref for e in entries for ref in e.ids},
        subject_keys={e.subject_key for e in entries} - {""},
        addresses=addresses - options.own_addresses,
    )


def _place(
    known: Known, entry: _Entry, options: StoreOptions, created: list[_New]
) -> StoredMessage | _Placed:
    """The stored message this copy is (an old location: StoredMessage), else the
    message it must be located at (a duplicate, or a new one registered in ``known``)."""
    at = entry.located_at
    old = known.located.get(at) if at is not None else None
    if old is not None:
        return StoredMessage(old.id, False, old.thread_id, ())
    duplicate = _duplicate(known, entry)
    if duplicate is not None:
        placed = _Placed(duplicate, False)
    else:
        new = _new(known, entry, options)
        created.append(new)
        placed = _Placed(new.row, True)
    if at is not None:
        known.located[at] = placed.row
    return placed


def _duplicate(known: Known, entry: _Entry) -> KnownRow | None:
    if entry.id_key:
        same_id = known.by_key.get(entry.id_key)
        if same_id is not None and _same_message(same_id, entry.message.item):
            return same_id
    return known.by_key.get(entry.hash_key)


def _same_message(stored: KnownRow, item: MailItem | MailHeaders) -> bool:
    if stored.content_hash == item.content_hash:
        return True
    same_senders = stored.senders == sorted(a.address for a in item.from_)
    return same_senders and stored.subject == (item.subject or "")


def _new(known: Known, entry: _Entry, options: StoreOptions) -> _New:
    message, item = entry.message, entry.message.item
    key = entry.id_key
    if not key or key in known.by_key:
        key = entry.hash_key
    values = message_values(entry.mailbox, key, message.raw, item, entry.stored_key)
    own = options.own_addresses
    values["direction"] = "out" if any(a.address in own for a in item.from_) else "in"
    values["thread_id"] = _thread(known, entry, options)
    if isinstance(message, Composed):
        values.update(_queued(message))
        values["thread_id"] = message.thread_id or values["thread_id"]
    row = known_row(
        0, key, item.content_hash, values["from_"], values["subject"], values["thread_id"]
    )
    known.by_key[key] = row
    _register_thread(known, values, entry)
    return _New(row, entry, values)


def _queued(message: Composed) -> dict[str, Any]:
    """The outbox columns of a message queued for sending."""
    return {
        "direction": "out",
        "state": "queued",
        "next_attempt_at": message.due,
        "agent_id": message.agent_id,
    }


def _thread(known: Known, entry: _Entry, options: StoreOptions) -> str:
    candidates = known.candidates(entry.subject_key)
    decision = assign_thread(entry.thread, known.threads, candidates, options.thread_policy)
    return decision.thread_id[:998]


def _register_thread(known: Known, values: dict[str, Any], entry: _Entry) -> None:
    for ref in entry.ids:
        known.threads.setdefault(ref, values["thread_id"])
    if values["subject_key"]:
        sample = SubjectSample(values["thread_id"], entry.thread.participants, values["sort_at"])
        known.subjects.setdefault(values["subject_key"], []).append(sample)


def _insert_messages(session: Session, created: list[_New]) -> None:
    """Insert the new messages and learn their ids (by dedupe key, unique per mailbox)."""
    messages = _table(EmailMessage)
    rows = [_columns(new.values) for new in created]
    returned = session.execute(
        insert(messages).returning(messages.c.id, messages.c.dedupe_key), rows
    )
    ids = {key: id_ for id_, key in returned}
    for new in created:
        new.row.id = ids[new.row.dedupe_key]


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (column name -> value) with one executemany, if there are any."""
    if rows:
        session.execute(insert(table), list(rows))


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
    raws = [{"email_id": new.row.id, "raw": new.entry.message.raw} for new in created]
    insert_rows(session, _table(EmailRaw), raws)
    refs = [{"email_id": new.row.id, "ref": ref[:998]} for new in created for ref in new.entry.ids]
    insert_rows(session, _table(EmailRef), refs)
    parts = []
    for new in created:
        item = new.entry.message.item
        if isinstance(item, MailItem):
            for n, part in enumerate(item.attachments):
                if not part.truncated:
                    blobs.put(part.content, part.sha256)
                parts.append(attachment_values(new.row.id, n, part))
    insert_rows(session, _table(EmailAttachment), parts)


def _location(email_id: int, copy: Copy) -> dict[str, Any]:
    return {
        "email_id": email_id,
        "mailbox": copy.mailbox,
        "folder": copy.folder,
        "uidvalidity": copy.uidvalidity,
        "uid": copy.uid,
    }


def _link(
    session: Session, known: Known, created: list[_New], options: StoreOptions
) -> dict[int, tuple[int, ...]]:
    """Link new messages to contacts; returns message id -> contact ids."""
    linked: dict[int, tuple[int, ...]] = {}
    for new in created:
        item = new.entry.message.item
        if options.create_unknown_contacts:
            _create_contacts(session, item.from_, options, known.contacts)
        addresses = people((*item.from_, *item.to, *item.cc, *item.reply_to))
        ids = {known.contacts[a] for a in addresses if a in known.contacts}
        linked[new.row.id] = tuple(sorted(ids))
    links = [{"email_id": e, "contact_id": c} for e, ids in linked.items() for c in ids]
    insert_rows(session, _table(EmailContact), links)
    return linked


def _create_contacts(
    session: Session, senders: Sequence[Address], options: StoreOptions, found: dict[str, int]
) -> None:
    """Create a contact for each sender not in ``found`` (and not our own); updates ``found``."""
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


def _result(result: StoredMessage | _Placed, contacts: dict[int, tuple[int, ...]]) -> StoredMessage:
    if isinstance(result, StoredMessage):
        return result
    row = result.row
    linked = contacts.get(row.id, ()) if result.created else ()
    return StoredMessage(row.id, result.created, row.thread_id, linked)
