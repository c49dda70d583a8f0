"""The mirror's writes: a fetched batch of a folder stored in one transaction, with the
folder's last UID, and the folder state a sync round starts from.

The mailbox worker hands each batch to :func:`store_folder_batch`: a plain
synchronous function that its :class:`core.dbthread.DbWorker` runs in one hop,
in one transaction, on its database thread. It stores the copies
(:func:`core.mail.store.store_messages`), advances the folder's last UID and,
for an incremental round, finds who to tell about each new message; the event
loop waits once per batch, not once per statement.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.mail.blobs import BlobStore
from core.mail.email_json import emails_json
from core.mail.headers import MailHeaders
from core.mail.models import EmailLocation, EmailMessage, FolderState
from core.mail.parse import MailItem
from core.mail.queries import MailReaders, mail_readers, readers_extensions
from core.mail.store import Copy, Fetched, StoredMessage, StoreOptions, store_messages
from core.models import utcnow

log = logging.getLogger(__name__)

#: SQLite page cache of a mail session's connection (KiB): the indexes of the
#: messages table stay in it across batches instead of being re-read from the
#: OS on every insert (SQLite's default is 2 MiB).
SQLITE_CACHE_KIB = 32 * 1024


def widen_cache(conn: Connection) -> None:
    """Give the mail session's own SQLite connection a larger page cache."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")


@dataclass(frozen=True, slots=True)
class FolderBatch:
    """Fetched copies of one folder, above its last committed UID, in UID order;
    ``last`` is the copy whose UID the folder advances to. ``announce``: tell the
    agents about new messages (an incremental round)."""

    last: Copy
    fetched: Sequence[Fetched]
    announce: bool


@dataclass(frozen=True, slots=True)
class Announcement:
    """A new message to publish (:func:`core.mail.email_json.email_json`), and to whom:
    ``readers``, reached at ``extensions``."""

    email: dict[str, Any]
    readers: MailReaders
    extensions: frozenset[str]
    #: ``email.received``; ``email.sent`` for mail the mailbox sent from another client
    #: (found in Sent; what the outbox sent is stored already and not announced again).
    kind: str = "email.received"


def store_folder_batch(
    conn: Connection, batch: FolderBatch, blobs: BlobStore, options: StoreOptions
) -> list[Announcement]:
    """Store ``batch`` and advance its folder's last UID (the caller's transaction)."""
    with Session(bind=conn) as session:
        results = store_messages(session, batch.fetched, blobs, options, unlocated=True)
        created = [
            (result, fetched.item)
            for result, fetched in zip(results, batch.fetched, strict=True)
            if batch.announce and result.created
        ]
        announced = _announcements(session, created, options)
        last = batch.last
        state = session.get(FolderState, (last.mailbox, last.folder))
        assert state is not None  # created when the round began
        state.last_uid, state.synced_at = max(state.last_uid, last.uid), utcnow()
        session.flush()
    return announced


def _announcements(
    session: Session,
    created: Sequence[tuple[StoredMessage, MailItem | MailHeaders]],
    options: StoreOptions,
) -> list[Announcement]:
    """What to tell whom of the new messages (the readers of
    :func:`core.mail.queries.mail_readers`); the messages read back in one query."""
    if not created:
        return []
    ids = [stored.id for stored, _ in created]
    rows = session.scalars(select(EmailMessage).where(EmailMessage.id.in_(ids)))
    messages = {message.id: message for message in rows}
    emails = emails_json(session, [messages[id_] for id_ in ids])
    return [
        _announcement(session, email, stored, item, options)
        for email, (stored, item) in zip(emails, created, strict=True)
    ]


def _announcement(
    session: Session,
    email: dict[str, Any],
    stored: StoredMessage,
    item: MailItem | MailHeaders,
    options: StoreOptions,
) -> Announcement:
    people = [a.address for a in (*item.to, *item.cc)]
    linked = bool(stored.contact_ids)
    readers = mail_readers(session, linked, people, visibility=options.visibility)
    extensions = frozenset() if readers.everyone else readers_extensions(session, readers)
    own = any(a.address in options.own_addresses for a in item.from_)
    kind = "email.sent" if own else "email.received"
    return Announcement(email, readers, extensions, kind)


async def start_uid(session: AsyncSession, mailbox: str, folder: str, uidvalidity: int) -> int:
    """The last committed UID of a folder; 0 for a new folder, and after a UIDVALIDITY
    change, whose old locations are forgotten (the caller commits)."""
    state = await session.get(FolderState, (mailbox, folder))
    if state is None:
        session.add(FolderState(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity))
        return 0
    if state.uidvalidity != uidvalidity:
        log.info("mailbox %s: %s has a new UIDVALIDITY, resyncing", mailbox, folder)
        await session.execute(
            delete(EmailLocation).where(
                EmailLocation.mailbox == mailbox, EmailLocation.folder == folder
            )
        )
        state.uidvalidity, state.last_uid = uidvalidity, 0
    return state.last_uid
