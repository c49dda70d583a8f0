"""Telephony worker: AMI edge -> one ordered queue -> call tracker -> database -> push.

The AMI edge (:class:`~crmcomms.ami.translate.AmiTranslator`) hands every typed
event to a plain function that puts it on the :class:`AmiInbox`; one consumer
task drains the queue in order, feeds the sans-I/O tracker
and hands the resulting events to the pop enricher, which reads what they need
(call ids, callers, cards) and publishes them at once; the call-log writer writes
their rows behind (``call.ended`` goes out once written, see
:mod:`crmcomms.telephony.call_log`).

Reconciliation. At start-up the calls a previous run left ringing or talking
go back into the tracker. After every (re)login the daemon asks the PBX its
time (``Ping``) and its channels (``CoreShowChannels``); the list joins the
queue at its place in the stream, so the tracker adopts live channels, dated
by their age, and ends calls that vanished while the link was down at an
unknown time (never the daemon's clock). With a ``[cdr]`` source, the CDR rows
of the gap are then read and the calls they describe fill in what the link
missed (:mod:`crmcomms.telephony.reconcile`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.calls import CallRow
from core.dbthread import DbWorker
from crmcomms.ami.client import AmiClient
from crmcomms.ami.errors import AmiError
from crmcomms.ami.translate import AmiTranslator, translate_items
from crmcomms.logs import log_fields
from crmcomms.pbx_events import AmiEvent, ChannelSnapshot, CoreShowChannel
from crmcomms.telephony.backfiller import Backfiller
from crmcomms.telephony.call_log import CallLogWriter
from crmcomms.telephony.calls import CallEnded, CallEvent, CallRinging, CallSnapshot
from crmcomms.telephony.controls import CallControls, queue_status_action
from crmcomms.telephony.dialer import Dialer
from crmcomms.telephony.logged import last_activity, open_calls
from crmcomms.telephony.pops import PopEnricher
from crmcomms.telephony.presence_feed import PresenceFeed, QueueSnapshot
from crmcomms.telephony.tracker import CallTracker

log = logging.getLogger(__name__)

BATCH = 512
#: Longest the writer may take at shutdown for the calls it has not written yet.
SHUTDOWN_FLUSH = 10.0


@dataclass(frozen=True, slots=True)
class Resync:
    """The channels Asterisk listed after a (re)login; ``pbx_now`` its time then, if known."""

    channels: Sequence[CoreShowChannel]
    pbx_now: datetime | None


@dataclass(frozen=True, slots=True)
class Backfill:
    """Calls read from the CDR, each with what the log held of it when read."""

    calls: Sequence[tuple[CallSnapshot, CallSnapshot | None]]


Snapshot = Resync | Backfill | QueueSnapshot
"""What joins the stream besides the AMI events."""
InboxItem = AmiEvent | Snapshot
SNAPSHOTS = (Resync, Backfill, QueueSnapshot)


def pbx_time(response: dict[str, str]) -> datetime | None:
    """The ``Timestamp`` of a Ping answer (the PBX's clock), None if absent or bad."""
    try:
        return datetime.fromtimestamp(float(response["Timestamp"]), UTC)
    except (KeyError, ValueError, OverflowError):
        return None


def channels_of(items: Sequence[dict[str, str]]) -> list[CoreShowChannel]:
    """The CoreShowChannel items of a CoreShowChannels answer, typed; bad items are logged."""
    typed = translate_items(items, "CoreShowChannels")
    return [event for event in typed if isinstance(event, CoreShowChannel)]


class AmiInbox:
    """The one ordered queue between the AMI edge and the consumer: typed events as the
    link reads them (stamped with their arrival, for the pop latency), the channel and
    queue lists at their place in the stream, CDR backfills."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[InboxItem] = asyncio.Queue()
        self.arrivals: deque[float] = deque()  # when each queued event arrived, in order
        self.dropped = 0  # blocks the edge dropped (consumed at once)
        self.progress = asyncio.Event()

    def put_event(self, event: AmiEvent) -> None:
        """A typed event from the AMI edge (a plain function: order is the wire's)."""
        self.arrivals.append(time.perf_counter())
        self.queue.put_nowait(event)

    def put(self, item: Snapshot) -> None:
        """A list or a backfill, at its place in the stream."""
        self.queue.put_nowait(item)

    def put_backfill(self, calls: Sequence[tuple[CallSnapshot, CallSnapshot | None]]) -> None:
        """Calls read from the CDR (the backfiller's ``deliver``)."""
        self.put(Backfill(calls))

    def drop(self) -> None:
        """The edge dropped a block: it counts as consumed."""
        self.dropped += 1
        self.progress.set()

    async def relist(self, client: AmiClient) -> None:
        """After a login: the PBX's time, then its channels and queues, each queued at
        its place in the stream (the client's ``on_connected``)."""
        pbx_now: datetime | None = None
        try:
            pbx_now = pbx_time(await client.send_action({"Action": "Ping"}))
            if pbx_now is None:
                log.warning(
                    "the PBX's Ping answer has no Timestamp: calls adopted now get no start time"
                )
            await client.send_list_action(
                {"Action": "CoreShowChannels"},
                on_list=lambda items: self.put(Resync(channels_of(items), pbx_now)),
            )
        except AmiError as exc:
            log.warning("cannot list channels after AMI login: %s", exc)
        try:
            await client.send_list_action(
                queue_status_action(),
                on_list=lambda items: self.put(
                    QueueSnapshot(translate_items(items, "QueueStatus"), pbx_now)
                ),
            )
        except AmiError as exc:
            log.warning("cannot read the queues after AMI login: %s", exc)


class TelephonyService:
    """The telephony worker: the AMI link, the consumer feeding the tracker, the call-log
    writer and the CDR backfill; ``run()`` until cancelled.

    Built by the composition root (:mod:`crmcomms.app`), which hands it its parts:
    the client wired to ``inbox`` through the AMI edge (``edge``), the pop enricher
    (``pops``) and the call-log writer (``call_log``) it feeds, the presence feed,
    and the call controls and dialer the web reaches through it.
    """

    def __init__(
        self,
        inbox: AmiInbox,
        client: AmiClient,
        edge: AmiTranslator,
        tracker: CallTracker,
        *,
        pops: PopEnricher,
        call_log: CallLogWriter,
        presence: PresenceFeed,
        db: DbWorker,
        controls: CallControls,
        dialer: Dialer,
        backfiller: Backfiller | None = None,
    ) -> None:
        self._inbox = inbox
        self._queue, self._arrivals = inbox.queue, inbox.arrivals
        self.client, self.edge, self.tracker = client, edge, tracker
        self.pops, self.call_log, self.presence = pops, call_log, presence
        self.controls, self.dialer, self.backfiller = controls, dialer, backfiller
        self._db = db
        self.resyncs = 0
        self.failed_items = 0  # items skipped because handling them raised
        self._since: datetime | None = None  # where a backfill after start-up begins
        self.idle = asyncio.Event()
        self.progress = inbox.progress
        self._recorded = 0  # events handled whose calls are written
        self._unrecorded = 0  # events handled whose calls may not be written yet

    async def run(self) -> None:
        """Take over the calls left open, then run the AMI link, the consumer,
        the call writer and the CDR backfill until cancelled."""
        await self._restore()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.client.run(), name="ami-link")
                group.create_task(self._consume(), name="ami-consumer")
                group.create_task(self.call_log.run(self._written), name="call-writer")
                if self.backfiller is not None:
                    group.create_task(self.backfiller.run(), name="cdr-backfill")
        finally:
            async with asyncio.timeout(SHUTDOWN_FLUSH):
                await self.call_log.flush(self._written)  # what it had not written yet

    async def _restore(self) -> None:
        """The calls a previous run logged as ringing or talking wait for the first
        channel list; a backfill after it starts where the log ends."""
        opened = await self._db.read(open_calls)
        last = await self._db.read(last_activity)
        self.tracker.restore(opened)
        starts = [call.started_at for call in opened] + ([last] if last is not None else [])
        self._since = min(starts, default=None)
        if opened:
            log.info(
                "%d call(s) left open by the last run wait for the PBX's channel list", len(opened)
            )

    @property
    def consumed(self) -> int:
        """AMI blocks done with: dropped at the edge, or handled and their calls written
        (who waits for it may read the database)."""
        return self._inbox.dropped + self._recorded

    @property
    def queue_depth(self) -> int:
        """AMI blocks received and not handled yet (the AMI socket is read eagerly:
        Asterisk drops slow readers, so a backlog queues here; /metrics shows it)."""
        return self._queue.qsize()

    def link_state(self) -> str:
        """ "connected", or "down: <last error>" for /healthz."""
        if self.client.connected:
            return "connected"
        return f"down: {self.client.last_error or 'connecting'}"

    async def _consume(self) -> None:
        while True:
            if self._queue.empty():
                self.idle.set()
            item = await self._queue.get()
            self.idle.clear()
            batch = [item]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._process(batch)
            self._unrecorded += sum(1 for item in batch if not isinstance(item, SNAPSHOTS))
            self._account()

    def _written(self, ended: Sequence[CallRow]) -> None:
        """The writer wrote: what the enricher kept of the ended calls goes."""
        self.pops.forget(ended)
        self._account()

    def _account(self) -> None:
        """Count the blocks handled as consumed once their calls are written
        (who waits for "consumed" may read the database)."""
        if not self.call_log.pending:
            self._recorded += self._unrecorded
            self._unrecorded = 0
        self.progress.set()

    async def _process(self, batch: list[InboxItem]) -> None:
        events: list[CallEvent] = []
        arrived: dict[int, float] = {}  # id of a call.ringing event -> its block's arrival
        for item in batch:
            at = None if isinstance(item, SNAPSHOTS) else self._arrivals.popleft()
            with log_fields(linkedid=_linkedid(item)):
                produced = self._feed_one(item)  # its lines carry the call's linkedid
            if at is not None:
                arrived.update(_ringing_arrivals(produced, at))
            events += produced
        self.presence.feed_calls(events)
        self.presence.publish()
        if not events:
            return
        self._complete_later(events)
        try:
            await self.pops.handle(events, arrived)
        except Exception:
            # One bad batch must not stop the worker; the calls stay in the tracker and
            # are recorded with their next event.
            log.exception("could not record %d call event(s)", len(events))

    def _feed_one(self, item: InboxItem) -> list[CallEvent]:
        """Feed one item; one that breaks the tracker is logged by name and skipped."""
        try:
            return self._feed(item)
        except Exception:
            self.failed_items += 1
            log.exception("skipped an AMI item the tracker could not handle: %s", _identity(item))
            return []

    def _feed(self, item: InboxItem) -> list[CallEvent]:
        if isinstance(item, Resync):
            events = self._apply_resync(item)
            self.controls.load_channels(item.channels)  # which calls are held, per the PBX
            return events
        if isinstance(item, Backfill):
            return self.tracker.backfill(item.calls)
        if isinstance(item, QueueSnapshot):
            self.presence.feed_snapshot(item)
            return []
        self.presence.feed_event(item)
        return self.tracker.feed(item)

    def _complete_later(self, events: Sequence[CallEvent]) -> None:
        """A call that ended live with times the link missed: its CDR (written at
        hangup) may know them."""
        if self.backfiller is None:
            return
        for event in events:
            call = event.call
            if isinstance(event, CallEnded) and call.times_uncertain and not call.backfilled:
                self.backfiller.request(call.started_at)

    def _apply_resync(self, item: Resync) -> list[CallEvent]:
        # where the gap began: the last PBX time seen, else where the log ends, else (an
        # empty log: a first start, or a crash before anything was written) the list's time
        since = self.tracker.last_time or self._since or item.pbx_now
        events = self.tracker.resync(item.channels, item.pbx_now)
        self.resyncs += 1
        if self.backfiller is not None and since is not None:
            self.backfiller.request(since)
        return events

    def active_calls(self) -> list[CallSnapshot]:
        """The calls in progress, for the supervisor wall."""
        return self.tracker.active_calls()


def _ringing_arrivals(events: Sequence[CallEvent], at: float) -> Mapping[int, float]:
    return {id(event): at for event in events if isinstance(event, CallRinging)}


def _channel_of(item: InboxItem) -> ChannelSnapshot | None:
    """The channel an event is about (a dial's caller, else its destination)."""
    for name in ("channel", "caller", "dest"):
        channel = getattr(item, name, None)
        if isinstance(channel, ChannelSnapshot):
            return channel
    return None


def _linkedid(item: InboxItem) -> str | None:
    """The call an item is about, if it is an event about a channel."""
    channel = _channel_of(item)
    return None if channel is None else channel.linkedid


def _identity(item: InboxItem) -> str:
    """What names an item in a log line: the event and its channel's ids."""
    channel = _channel_of(item)
    if channel is None:
        return type(item).__name__
    ids = f"Channel={channel.name} Uniqueid={channel.uniqueid} Linkedid={channel.linkedid}"
    return f"Event={type(item).__name__} {ids}"
