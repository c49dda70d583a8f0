"""The mailbox worker: mirrors a mailbox's folders into the database, then waits for mail.

Per folder the database keeps the UIDVALIDITY seen and the last UID
committed (:class:`core.mail.models.FolderState`). A round, for each folder:
EXAMINE (read-only); if UIDVALIDITY changed, the folder's old locations are
forgotten and it is fetched again from UID 1 (messages already stored are
recognised by Message-ID or content hash, and only gain a new location);
then the (UID, size) of every newer message is listed and the messages are
fetched with ``BODY.PEEK[]`` in batches bounded by count and bytes. Each
batch's headers are read off the event loop (``parse_headers``) and the
batch is stored (raw bytes, headers, dedupe, thread, contacts, location) in
one transaction together with the folder's new last UID (``batches``), in one
hop on the session's own database thread: a connection lost or a daemon
killed mid-batch repeats at most that batch, and storing is idempotent. While
one batch is read and stored the next is fetched.

Bodies and attachments are the second phase (``core.mail.bodies``): behind
the stored batches a background task parses the messages still marked
``body_parsed = false``, on the executor (a process pool uses every core),
and stores the results; their headers are not read again. The mark is in the
database, so a crash between the phases loses nothing. The second phase
runs beside the fetch of the next batches (it starts with the first stored
batch, not after the round): the parsing overlaps the waits on the IMAP
server, and new mail is announced as soon as its headers are stored.

Between rounds the worker waits for new mail in any of its folders: NOTIFY,
IDLE (one connection per folder, bounded) or polling, every wait ending after
``poll_interval`` at the latest (:mod:`crmcomms.mail.watch`). Which folders:
:mod:`crmcomms.mail.folders`.
Errors: the connection is re-opened with exponential backoff; a refused
login is logged once, shown in /readyz (``mailbox:<name>``), and retried every
``auth_retry``.

Push: ``email.received`` for each new incoming message of an incremental
round (not for the initial import; ``email.sent`` for one the mailbox sent from
another client, found in Sent), as soon as its headers are stored (its
body follows within the second phase). Contacts carry no owner in the CRM, so a
message linked to a contact goes to every agent; otherwise to the agents
whose own address it names (supervisors see all in both cases).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import BrokenExecutor, Executor
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import SessionFactory
from core.dbthread import DbWorker
from core.mail import MailHeaders
from core.mail.blobs import BlobStore
from core.mail.bodies import parse_bodies, store_bodies, unparsed
from core.mail.mirror import (
    Announcement,
    FolderBatch,
    start_uid,
    store_folder_batch,
    widen_cache,
)
from core.mail.store import Copy, Fetched
from crmcomms.config import MailboxSettings
from crmcomms.health import Health
from crmcomms.logs import log_fields
from crmcomms.mail import imap_endpoint, store_options
from crmcomms.mail.fetching import batches, chunks, read_headers
from crmcomms.mail.folders import mirrored_folders
from crmcomms.mail.imap import ImapAuthError, ImapClient, ImapCommandError, ImapError, connect
from crmcomms.mail.progress import Progress
from crmcomms.mail.watch import FolderWatch, WatchSettings
from crmcomms.metrics import Metrics
from crmcomms.push import Audience, Publisher

log = logging.getLogger(__name__)
MAX_ATTACHMENT_BYTES = 25 * 2**20
# Batches being read and stored while the next one is fetched (memory: that many + 1).
_PIPELINE = 2


@dataclass(frozen=True, slots=True)
class SyncTuning:
    """Batch sizes and timings (tests shorten them)."""

    batch_messages: int = 500
    batch_bytes: int = 32 * 2**20
    body_messages: int = 200
    body_bytes: int = 16 * 2**20
    body_chunk: int = 25
    idle_timeout: float = 25 * 60.0
    folder_poll_interval: float | None = None  # None: the mailbox's setting
    use_notify: bool = True
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    auth_retry: float = 300.0
    timeout: float = 120.0
    max_attachment_bytes: int = MAX_ATTACHMENT_BYTES


@dataclass(frozen=True, slots=True)
class MailboxMetrics:
    """The series a mailbox worker feeds, already labelled with its mailbox."""

    lag: Gauge  # seconds since the last finished round
    stored: Counter  # messages stored
    errors: Counter  # sessions ended by an error

    @classmethod
    def of(cls, metrics: Metrics, mailbox: str) -> MailboxMetrics:
        """The mailbox's series of the daemon's metrics."""
        return cls(
            metrics.imap_lag.labels(mailbox),
            metrics.mail_messages.labels(mailbox),
            metrics.mail_sync_errors.labels(mailbox),
        )


@dataclass(frozen=True, slots=True)
class MailboxStores:
    """Where a mailbox worker reads and writes: the database (``sessions``, and its
    ``engine`` for each IMAP session's own database thread) and the attachment store."""

    sessions: SessionFactory
    engine: AsyncEngine
    blobs: BlobStore


class MailboxWorker:
    """Mirrors one mailbox; ``run()`` never returns (cancel it to stop)."""

    def __init__(
        self,
        settings: MailboxSettings,
        stores: MailboxStores,
        publisher: Publisher,
        metrics: MailboxMetrics,
        health: Health,
        tuning: SyncTuning | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.sessions, self.engine, self.blobs = stores.sessions, stores.engine, stores.blobs
        self.publisher = publisher
        self.metrics = metrics
        self.health = health
        self.tuning = tuning or SyncTuning(
            idle_timeout=settings.idle_timeout, max_attachment_bytes=settings.max_attachment_bytes
        )
        self.executor = executor
        self.options = store_options(settings)
        self.round_done = asyncio.Event()
        #: set once a round has ended and no stored body is left to parse
        self.bodies_done = asyncio.Event()
        self._bodies_due = asyncio.Event()
        self._at_rest = False  # no round under way: it ended, or failed
        self._delay = self.tuning.backoff_initial
        self._auth_reported = False
        self.login_failures = 0
        self._last_sync = time.monotonic()
        self._synced: set[str] = set()  # folders fully synced once: their new mail is news
        metrics.lag.set_function(lambda: time.monotonic() - self._last_sync)

    async def run(self) -> None:
        """Sync, wait for mail, repeat, reconnecting on errors; parse bodies behind; forever."""
        with log_fields(mailbox=self.name):  # every line of this mailbox's tasks names it
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._mirror())
                tasks.create_task(self._parse_bodies())

    async def _mirror(self) -> None:
        while True:
            if not self._auth_reported:
                self._health("connecting")
            try:
                await self._session()
            except ImapAuthError as exc:
                self.metrics.errors.inc()
                self._login_refused(exc)
                await asyncio.sleep(self.tuning.auth_retry)
                continue
            except (ImapError, SQLAlchemyError) as exc:
                log.warning("mailbox %s: %s; retrying in %.0f s", self.name, exc, self._delay)
                self.metrics.errors.inc()
                self._health("down", str(exc))
                self._at_rest = True
                self._bodies_due.set()  # what was stored before the error
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, self.tuning.backoff_max)

    @property
    def name(self) -> str:
        return self.settings.name

    def _health(self, state: str, error: str | None = None) -> None:
        """Report to /readyz: up while ``syncing`` or ``ok``; down otherwise."""
        up = state in ("syncing", "ok")
        self.health.set(f"mailbox:{self.name}", state, ok=up, error=error)

    def _login_refused(self, exc: ImapAuthError) -> None:
        self.login_failures += 1
        if not self._auth_reported:
            log.error(
                "mailbox %s: IMAP login as %r refused (%s); check the password; "
                "retrying every %.0f s",
                self.name,
                imap_endpoint(self.settings).username,
                exc,
                self.tuning.auth_retry,
            )
            self._auth_reported = True
        self._health("login refused", str(exc))

    async def _session(self) -> None:
        endpoint = imap_endpoint(self.settings, self.tuning.timeout)
        async with connect(endpoint) as client, self._database() as db:
            self._auth_reported = False
            self._health("syncing")
            folders = await self.folders(client)
            watch = FolderWatch(self.name, client, endpoint, folders, self._watch_settings())
            async with watch.running():
                while True:
                    watch.round_starts()
                    self._at_rest = False
                    new = {f: await self._sync_folder_logged(client, db, f) for f in folders}
                    self._round_finished()
                    watch.round_found(new)
                    await watch.wait()

    def _watch_settings(self) -> WatchSettings:
        box, tuning = self.settings, self.tuning
        return WatchSettings(
            poll_interval=box.poll_interval,
            idle_timeout=tuning.idle_timeout,
            folder_poll_interval=tuning.folder_poll_interval or box.folder_poll_interval,
            idle_connections=box.idle_connections,
            use_notify=tuning.use_notify,
        )

    @contextlib.asynccontextmanager
    async def _database(self) -> AsyncIterator[DbWorker]:
        """The session's own database thread and connection: an initial sync keeps it
        busy for minutes, and must not hold up the telephony's database thread."""
        db = DbWorker(self.engine)
        try:
            await db.run(widen_cache)
            yield db
        finally:
            await db.close()

    async def folders(self, client: ImapClient) -> list[str]:
        """The configured folders as the server names them, else INBOX and the Sent folder."""
        listed, namespace = await client.list_folders(), await client.namespace()
        return mirrored_folders(self.settings.folders, listed, namespace)

    def _round_finished(self) -> None:
        self._last_sync = time.monotonic()
        self._delay = self.tuning.backoff_initial
        self._health("ok")
        self._at_rest = True
        self.round_done.set()
        self._bodies_due.set()

    async def _sync_folder_logged(self, client: ImapClient, db: DbWorker, folder: str) -> int:
        try:
            return await self.sync_folder(client, db, folder)
        except ImapCommandError as exc:  # a missing folder must not stop the others
            log.error("mailbox %s: folder %r skipped: %s", self.name, folder, exc)
            return 0

    async def sync_folder(self, client: ImapClient, db: DbWorker, folder: str) -> int:
        """Fetch and store every message of ``folder`` above the last committed UID; how many.

        Pipelined: the next batch is fetched while earlier ones (``_PIPELINE``) have
        their headers read and are stored; batches commit in UID order (each waits
        for its predecessor before storing).
        """
        info = await client.examine(folder)
        last_uid = await self._start_uid(folder, info.uidvalidity)
        if info.uidnext is not None and info.uidnext <= last_uid + 1:
            self._synced.add(folder)
            return 0
        pending = await client.uid_sizes(last_uid)
        tuning = self.tuning
        progress = Progress(self.name, folder, len(pending))
        in_flight: list[asyncio.Task[None]] = []
        try:
            for batch in batches(pending, tuning.batch_messages, tuning.batch_bytes):
                progress.advance(len(batch))
                fetched = await client.fetch_bodies([uid for uid, _ in batch])
                copy = Copy(self.name, folder, info.uidvalidity, batch[-1][0])
                previous = in_flight[-1] if in_flight else None
                announce = last_uid > 0 or folder in self._synced
                store = self._read_and_store(db, copy, fetched, announce, previous)
                in_flight.append(asyncio.create_task(store))
                if len(in_flight) > _PIPELINE:
                    await in_flight.pop(0)
            while in_flight:
                await in_flight[0]
                in_flight.pop(0)
            self._synced.add(folder)
            if pending:
                progress.finished()
            return len(pending)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _read_and_store(
        self,
        db: DbWorker,
        last: Copy,
        fetched: list[tuple[int, bytes]],
        announce: bool,
        previous: asyncio.Task[None] | None,
    ) -> None:
        headers = await self._read_headers([raw for _, raw in fetched])
        copies = [
            Fetched(Copy(last.mailbox, last.folder, last.uidvalidity, uid), raw, item)
            for (uid, raw), item in zip(fetched, headers, strict=True)
        ]
        if previous is not None:
            await previous
        await self._store_batch(db, FolderBatch(last, copies, announce))

    async def _start_uid(self, folder: str, uidvalidity: int) -> int:
        """The last committed UID; 0 for a new folder or after a UIDVALIDITY change."""
        async with self.sessions.begin() as session:
            return await start_uid(session, self.name, folder, uidvalidity)

    async def _read_headers(self, raws: list[bytes]) -> list[MailHeaders]:
        loop = asyncio.get_running_loop()
        parts = chunks(raws, max(1, len(raws) // 2))  # two halves: two cores
        read = [loop.run_in_executor(self.executor, read_headers, part) for part in parts]
        return [headers for part in await asyncio.gather(*read) for headers in part]

    async def _parse_bodies(self) -> None:
        """Behind the stored batches, parse the bodies still marked unparsed, batch by batch."""
        while True:
            await self._bodies_due.wait()
            self._bodies_due.clear()
            try:
                while await self.parse_some_bodies():
                    pass
            except (SQLAlchemyError, OSError, BrokenExecutor) as exc:
                log.warning("mailbox %s: parsing bodies failed, retried later: %s", self.name, exc)
            else:
                # not while a batch was stored meanwhile, nor while a round is under way
                if not self._bodies_due.is_set() and self._at_rest:
                    self.bodies_done.set()

    async def parse_some_bodies(self) -> bool:
        """Parse and store one batch of unparsed bodies; False when none was left."""
        tuning = self.tuning
        async with self.sessions() as session:
            pending = await unparsed(session, self.name, tuning.body_messages, tuning.body_bytes)
        if not pending:
            return False
        self.bodies_done.clear()
        loop = asyncio.get_running_loop()
        parse = functools.partial(
            parse_bodies,
            blob_root=self.blobs.root,
            max_attachment_bytes=tuning.max_attachment_bytes,
        )
        parts = [
            loop.run_in_executor(self.executor, parse, part)
            for part in chunks(pending, tuning.body_chunk)
        ]
        parsed = [body for part in await asyncio.gather(*parts) for body in part]
        async with self.sessions.begin() as session:
            await store_bodies(session, parsed)
        return True

    async def _store_batch(self, db: DbWorker, batch: FolderBatch) -> None:
        """Store a batch and advance the folder's last UID, atomically; then announce."""
        write = functools.partial(
            store_folder_batch, batch=batch, blobs=self.blobs, options=self.options
        )
        announced: list[Announcement] = await db.run(write)
        self.metrics.stored.inc(len(batch.fetched))
        self.bodies_done.clear()  # until the bodies of this batch are parsed too
        self._bodies_due.set()
        for new in announced:
            everyone = new.readers.everyone
            audience = Audience.all() if everyone else Audience(extensions=new.extensions)
            self.publisher.publish(new.kind, {"email": new.email}, audience)
