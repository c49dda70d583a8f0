"""The push bus of several daemons on one PostgreSQL: a table, a sequence, LISTEN/NOTIFY.

With SQLite one process numbers its events in memory (:class:`~crmcomms.push.PushHub`).
With PostgreSQL any process may publish and every process serves websockets, so
:class:`PgBus` is the :class:`~crmcomms.push.Publisher` producers use:

- **write**: ``publish`` never awaits; a writer task inserts what was published
  into ``events``, a batch per statement (one round trip), and announces the batch
  with ``NOTIFY crmcomms_events``: the batch itself when it fits in a notification,
  else its last ``seq`` (the table is the truth either way: no 8 KB limit, and a
  lost notification loses nothing). Writers take a transaction-level advisory lock
  before drawing numbers, so transactions commit in ``seq`` order and a reader
  never sees a number before a smaller one that will still appear (a rolled-back
  batch leaves a gap, which is harmless: nothing will ever fill it).
- **read**: a listener task in every process hands each event, in ``seq`` order, to
  the local hub (:meth:`PushHub.deliver`), which fans it out to this process's
  clients. A batch that came with its notification and follows the last event
  delivered is delivered at once (no read back: one round trip less on every pop);
  otherwise (a gap, a number only) the listener reads ``seq > last delivered`` from
  the table, and every few seconds anyway. A listener that reconnects reads from
  its last ``seq``: a notification lost meanwhile loses nothing.
- **replay**: every process numbers with the database's ``seq`` and greets with
  the database's epoch, and at start-up loads the last events into its hub, so
  a client reconnecting to another process with ``?since=`` gets exactly what it
  missed. ``caught_up`` lets a client ahead of this process's listener wait for it.
- **pruning**: rows older than ``retention`` are deleted, keeping at least
  ``keep`` (the hub's replay buffer).

A batch whose commit was sent but whose answer was lost with the connection is
sent again; every event carries its origin (this bus's random id and its number
here, unique in ``events``), so the repeat inserts nothing that is already there.
Events published while the database is unreachable wait in memory (at most
:data:`MAX_PENDING`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crmcomms.health import Health
from crmcomms.pg import (
    LOCK_NAMESPACE,
    Session,
    connect,
    keep_session,
)
from crmcomms.push import Audience, PushEvent, PushHub, check_event, frame_of

log = logging.getLogger(__name__)

CHANNEL = "crmcomms_events"
#: Signals between processes that carry no event (``outbox:<mailbox>``: mail queued).
SIGNALS = "crmcomms_signals"
#: The second key of the transaction lock ordering the writers of every process.
WRITE_LOCK = 0
#: Events inserted per transaction at most.
WRITE_BATCH = 500
#: Events read per query at most.
READ_BATCH = 1_000
#: The listener reads the table this often even without a notification.
SAFETY_POLL = 5.0
#: How often old events are pruned.
PRUNE_EVERY = 60.0
#: Events waiting for the database at most; older ones are dropped (and counted).
MAX_PENDING = 100_000

# One statement, one round trip, its own transaction. The lock is an InitPlan of a
# one-time filter: taken before the first row is numbered, held until the commit. The
# notification carries the batch itself when it fits (a listener in order delivers it
# without reading the table back), else its last seq.
_INSERT = """
WITH written AS (
    INSERT INTO events (type, everyone, extensions, body, origin)
    SELECT t, e, x::json, b, o
    FROM unnest($1::text[], $2::bool[], $3::text[], $4::text[], $5::text[])
        WITH ORDINALITY AS u(t, e, x, b, o, n)
    WHERE (SELECT pg_advisory_xact_lock($7, $8)) IS NOT NULL
    ORDER BY n
    ON CONFLICT (origin) DO NOTHING
    RETURNING seq, type, everyone, extensions, body
), batch AS (
    SELECT max(seq) AS last,
           json_agg(json_build_array(seq, type, everyone, extensions, body) ORDER BY seq)::text
               AS inline
    FROM written
)
SELECT pg_notify($6, CASE WHEN octet_length(inline) <= $9 THEN inline ELSE last::text END)
FROM batch WHERE last IS NOT NULL
"""
#: The longest notification payload (PostgreSQL's limit is 8000 bytes).
INLINE_LIMIT = 7_900
_READ = """
SELECT seq, type, everyone, extensions::text AS extensions, body
FROM events WHERE seq > $1 ORDER BY seq LIMIT $2
"""
_LAST = """
SELECT * FROM (
    SELECT seq, type, everyone, extensions::text AS extensions, body
    FROM events ORDER BY seq DESC LIMIT $1
) AS last ORDER BY seq
"""
_EPOCH = """
SELECT 'pg' || d.oid || '.' || 'events'::regclass::oid AS epoch,
       coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')), 0) AS last
FROM pg_database AS d WHERE d.datname = current_database()
"""
_PRUNE = """
DELETE FROM events
WHERE seq <= (SELECT max(seq) FROM events) - $1 AND created_at < now() - make_interval(secs => $2)
"""

Row = tuple[str, bool, str, str, str]  # type, everyone, extensions (JSON), body (JSON), origin


def event_of(record: Mapping[str, Any]) -> PushEvent:
    """A row of ``events`` as the hub's event (frame spliced from the stored body)."""
    extensions = frozenset(orjson.loads(record["extensions"]))
    audience = Audience(extensions=extensions, everyone=record["everyone"])
    frame = frame_of(record["seq"], record["type"], record["body"].encode())
    return PushEvent(seq=record["seq"], type=record["type"], audience=audience, frame=frame)


class PgBus:
    """Publisher for several processes on PostgreSQL, feeding this process's ``hub``."""

    def __init__(
        self,
        url: str,
        hub: PushHub,
        health: Health,
        *,
        retention: float = 3600.0,
        keep: int = 10_000,
    ) -> None:
        self._url = url
        self._hub = hub
        self._health = health
        self._retention = retention
        self._keep = keep
        self._pending: list[Row] = []
        self._origin = uuid.uuid4().hex[:16]  # this bus in events.origin
        self._published = 0
        self._signals: list[str] = []
        self._on_signal: list[Callable[[str], None]] = []
        self._wake_writer = asyncio.Event()
        self._wake_reader = asyncio.Event()
        self._delivered = asyncio.Event()
        self._written = asyncio.Event()
        self._up = {"writer": False, "listener": False}
        self.written = 0
        self.received = 0
        self.inline = 0  # of them, delivered from the notification itself
        self.dropped = 0
        self._report()

    @property
    def hub(self) -> PushHub:
        """The hub of this process this bus feeds."""
        return self._hub

    @property
    def pending(self) -> int:
        """Events published here and not in the table yet."""
        return len(self._pending)

    def publish(self, type: str, payload: Mapping[str, Any], audience: Audience) -> None:
        """Queue the event for the writer (never awaits); the hubs get it from the table."""
        check_event(type, payload)
        if len(self._pending) >= MAX_PENDING:
            del self._pending[0]
            self.dropped += 1
            log.error("event bus: %d events wait for the database; oldest dropped", MAX_PENDING)
        extensions = orjson.dumps(sorted(audience.extensions)).decode()
        body = orjson.dumps(payload).decode()
        self._published += 1
        origin = f"{self._origin}:{self._published}"
        self._pending.append((type, audience.everyone, extensions, body, origin))
        self._wake_writer.set()

    def signal(self, name: str) -> None:
        """Tell every process (this one too) ``name``, e.g. that an outbox has mail."""
        self._signals.append(name)
        self._wake_writer.set()

    def on_signal(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(name)`` for every signal from any process."""
        self._on_signal.append(callback)

    async def start(self) -> None:
        """Join the database's numbering: its epoch, and its last events into the hub.

        Run before the first client connects and before :meth:`run`.
        """
        conn = await connect(self._url, "bus")
        try:
            epoch = await conn.fetchrow(_EPOCH)
            last = await conn.fetch(_LAST, self._keep)
        finally:
            await conn.close()
        floor = last[0]["seq"] - 1 if last else epoch["last"]
        self._hub.restart_at(floor, epoch["epoch"])
        for record in last:
            self._hub.deliver(event_of(record))

    async def run(self) -> None:
        """The writer and the listener, each reconnecting on its own, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keep_up("writer", self._write), name="bus-writer")
            group.create_task(self._keep_up("listener", self._listen), name="bus-listener")

    async def caught_up(self, seq: int, timeout: float = 1.0) -> bool:
        """Wait (at most ``timeout``) until this process delivered ``seq``: for a client
        that saw it on another process just now."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._hub.current_seq < seq:
                    self._delivered.clear()
                    self._wake_reader.set()
                    await self._delivered.wait()
        return self._hub.current_seq >= seq

    async def written_more(self) -> None:
        """Wait until the writer wrote its next batch."""
        self._written.clear()
        await self._written.wait()

    async def _keep_up(self, role: str, session: Session) -> None:
        """Run ``session(conn)`` on a connection of its own; reconnect when it fails."""

        def lost(why: str) -> None:
            log.warning("event bus %s: %s; reconnecting", role, why)

        await keep_session(
            self._url, f"bus {role}", session, lost, lambda: self._set_up(role, False)
        )

    async def _write(self, conn: asyncpg.Connection) -> None:
        self._set_up("writer", True)
        pruned = time.monotonic()
        self._wake_writer.set()  # what waited for a reconnect
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRUNE_EVERY):
                    await self._wake_writer.wait()
            self._wake_writer.clear()
            while self._signals:
                await conn.execute("SELECT pg_notify($1, $2)", SIGNALS, self._signals[0])
                del self._signals[0]
            while self._pending:
                batch = self._pending[:WRITE_BATCH]
                await self._insert(conn, batch)
                del self._pending[: len(batch)]
                self.written += len(batch)
                self._written.set()
            if time.monotonic() - pruned >= PRUNE_EVERY:
                await conn.execute(_PRUNE, self._keep, self._retention)
                pruned = time.monotonic()

    async def _insert(self, conn: asyncpg.Connection, batch: Sequence[Row]) -> None:
        columns = list(zip(*batch, strict=True))
        await conn.execute(_INSERT, *columns, CHANNEL, LOCK_NAMESPACE, WRITE_LOCK, INLINE_LIMIT)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn: closed.set())
        await conn.add_listener(CHANNEL, self._notified)
        await conn.add_listener(SIGNALS, self._signalled)
        self._set_up("listener", True)
        while not closed.is_set():
            await self._drain(conn)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAFETY_POLL):
                    await self._wake_reader.wait()
            self._wake_reader.clear()
        raise ConnectionError("listener connection closed")

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith("["):
            if not self._deliver_inline(orjson.loads(payload)):
                self._wake_reader.set()  # a gap before it (or a listener behind): read
        elif not payload.isdigit() or int(payload) > self._hub.current_seq:
            self._wake_reader.set()

    def _deliver_inline(self, rows: list[list[Any]]) -> bool:
        """Deliver a batch that came with its notification if it follows what was
        delivered; False if something before it must be read from the table first."""
        for seq, type, everyone, extensions, body in rows:
            if seq <= self._hub.current_seq:
                continue  # read from the table meanwhile
            if seq != self._hub.current_seq + 1:
                return False
            audience = Audience(extensions=frozenset(extensions), everyone=everyone)
            frame = frame_of(seq, type, body.encode())
            self._hub.deliver(PushEvent(seq=seq, type=type, audience=audience, frame=frame))
            self.received += 1
            self.inline += 1
        self._delivered.set()
        return True

    def _signalled(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for callback in self._on_signal:
            callback(payload)

    async def _drain(self, conn: asyncpg.Connection) -> None:
        """Deliver every event after the last one delivered, in order."""
        while True:
            records = await conn.fetch(_READ, self._hub.current_seq, READ_BATCH)
            for record in records:
                if record["seq"] > self._hub.current_seq:  # not delivered inline meanwhile
                    self._hub.deliver(event_of(record))
                    self.received += 1
            if len(records) < READ_BATCH:
                break
        self._delivered.set()

    def _set_up(self, role: str, up: bool) -> None:
        if self._up[role] != up:
            self._up[role] = up
            self._report()

    def _report(self) -> None:
        down = [role for role, up in self._up.items() if not up]
        if down:
            error = f"{' and '.join(down)} not connected"
            self._health.set("bus", "down", ok=False, error=error, backend="postgresql")
        else:
            self._health.set("bus", "connected", ok=True, backend="postgresql")


class BusCollector(Collector):
    """The bus on /metrics: events written and received, waiting, connected."""

    def __init__(self, bus: PgBus) -> None:
        self._bus = bus

    def collect(self) -> Iterator[Metric]:
        bus = self._bus
        yield CounterMetricFamily(
            "crmcomms_bus_events_written", "Events this process wrote to the bus", bus.written
        )
        yield CounterMetricFamily(
            "crmcomms_bus_events_received", "Events this process read from the bus", bus.received
        )
        yield CounterMetricFamily(
            "crmcomms_bus_events_dropped", "Events dropped waiting for the database", bus.dropped
        )
        yield GaugeMetricFamily(
            "crmcomms_bus_pending", "Events published here, not in the table yet", bus.pending
        )
