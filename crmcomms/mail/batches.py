"""A fetched batch of a folder, from raw bytes to one committed transaction.

The mailbox worker fetches a folder in batches (``batches``), reads each
batch's headers in the process pool (``read_headers``, in ``chunks``), and
hands the batch to ``write_batch``: a plain synchronous function that the
worker's :class:`core.dbthread.DbWorker` runs in one hop, in one transaction,
on its database thread. It stores the copies (``core.mail.batch``), advances
the folder's last UID and, for an incremental round, finds who to tell about
each new incoming message; the event loop waits once per batch, not once per
statement, and the batch's Python work runs beside the next batch's fetch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.mail import MailHeaders, MailItem, parse_headers
from core.mail.batch import Fetched, store_copies
from core.mail.blobs import BlobStore
from core.mail.models import FolderState
from core.mail.queries import mail_readers, readers_extensions
from core.mail.store import Copy, StoredMessage, StoreOptions
from core.models import utcnow
from crmcomms.push import Audience

_T = TypeVar("_T")
#: SQLite page cache of a mail session's connection (KiB): the indexes of the
#: messages table stay in it across batches instead of being re-read from the
#: OS on every insert (SQLite's default is 2 MiB).
SQLITE_CACHE_KIB = 32 * 1024


def widen_cache(conn: Connection) -> None:
    """Give the mail session's own SQLite connection a larger page cache."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")


def read_headers(raws: Sequence[bytes]) -> list[MailHeaders]:
    """Read the headers of a batch (a plain function, so a process pool can run it)."""
    return [parse_headers(raw) for raw in raws]


def chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    """``items`` cut into pieces of at most ``size``, to spread over an executor's workers."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def batches(
    pending: Sequence[tuple[int, int]], max_count: int, max_bytes: int
) -> Iterator[list[tuple[int, int]]]:
    """Split (UID, size) pairs into batches of at most ``max_count`` messages and about
    ``max_bytes`` bytes (a single bigger message forms its own batch)."""
    batch: list[tuple[int, int]] = []
    size = 0
    for uid, length in pending:
        if batch and (len(batch) >= max_count or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((uid, length))
        size += length
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class FolderBatch:
    """Fetched copies of one folder, above its last committed UID, in UID order;
    ``last`` is the copy whose UID the folder advances to. ``announce``: tell the
    agents about new incoming messages (an incremental round)."""

    last: Copy
    fetched: Sequence[Fetched]
    announce: bool


@dataclass(frozen=True, slots=True)
class Announcement:
    """A new incoming message to publish, and to whom."""

    stored: StoredMessage
    headers: MailItem | MailHeaders
    audience: Audience
    #: ``email.received``; ``email.sent`` for mail the mailbox sent from another client
    #: (found in Sent; what the outbox sent is stored already and not announced again).
    kind: str = "email.received"


def write_batch(
    conn: Connection, batch: FolderBatch, blobs: BlobStore, options: StoreOptions
) -> list[Announcement]:
    """Store ``batch`` and advance its folder's last UID (the caller's transaction)."""
    with Session(bind=conn) as session:
        results = store_copies(session, batch.fetched, blobs, options, unlocated=True)
        announced = [
            Announcement(
                result,
                fetched.item,
                _audience(session, result, fetched.item),
                "email.sent" if _is_own(fetched.item, options) else "email.received",
            )
            for result, fetched in zip(results, batch.fetched, strict=True)
            if batch.announce and result.created
        ]
        last = batch.last
        state = session.get(FolderState, (last.mailbox, last.folder))
        assert state is not None  # created when the round began
        state.last_uid, state.synced_at = max(state.last_uid, last.uid), utcnow()
        session.flush()
    return announced


def _is_own(item: MailItem | MailHeaders, options: StoreOptions) -> bool:
    return any(a.address in options.own_addresses for a in item.from_)


def _audience(session: Session, result: StoredMessage, item: MailItem | MailHeaders) -> Audience:
    """Who is told: the readers of :func:`core.mail.queries.mail_readers`, by extension."""
    people = [a.address for a in (*item.to, *item.cc)]
    readers = mail_readers(session, bool(result.contact_ids), people)
    if readers.everyone:
        return Audience.all()
    return Audience(extensions=readers_extensions(session, readers))
