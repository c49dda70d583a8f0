"""Telephony worker: AMI link -> one ordered queue -> call tracker -> database -> push.

The AMI client hands every event block to a plain function that puts it on a
queue; one consumer task drains the queue in order, feeds the sans-I/O tracker
and hands the resulting events to the publisher, which reads what they need
(call ids, callers, cards), publishes them at once and leaves the call log to
its writer task (``call.ended`` goes out once written, see
:mod:`crmcomms.telephony.publisher`). After every
(re)login the channels Asterisk reports (``CoreShowChannels``) go through the
same queue, so the tracker ends calls that vanished while the link was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from crmcomms.ami.client import AmiClient
from crmcomms.ami.errors import AmiError
from crmcomms.services import Services
from crmcomms.telephony.ami_events import CoreShowChannel
from crmcomms.telephony.calls import CallEvent, CallSnapshot
from crmcomms.telephony.dialer import Dialer
from crmcomms.telephony.events import MalformedEvent, translate, wanted
from crmcomms.telephony.metrics import TelephonyCollector
from crmcomms.telephony.publisher import CallPublisher
from crmcomms.telephony.tracker import CallTracker

log = logging.getLogger(__name__)

BATCH = 512
#: Longest the writer may take at shutdown for the calls it has not written yet.
SHUTDOWN_FLUSH = 10.0


@dataclass(frozen=True, slots=True)
class Resync:
    """The channels Asterisk reported after a (re)login, at ``now``."""

    channels: Sequence[dict[str, str]]
    now: datetime


Item = dict[str, str] | Resync


def channels_of(items: Sequence[dict[str, str]]) -> list[CoreShowChannel]:
    """The CoreShowChannel items of a CoreShowChannels answer; bad items are logged."""
    channels = []
    for item in items:
        try:
            event = translate(item)
        except MalformedEvent as exc:
            log.warning("skipping a CoreShowChannel item: %s", exc)
            continue
        if isinstance(event, CoreShowChannel):
            channels.append(event)
    return channels


class TelephonyService:
    """Owns the AMI client, the tracker and the consumer; ``run()`` until cancelled."""

    def __init__(self, svc: Services) -> None:
        settings = svc.settings
        self._svc = svc
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self.tracker = CallTracker(settings.ami.agent_channel_patterns)
        self.client = AmiClient(
            settings.ami, self._queue.put_nowait, on_connected=self._resync, keep=self._keep
        )
        self.dialer = Dialer(self.client, settings.ami, settings.general.default_region)
        self.publisher = CallPublisher(svc, on_written=self._account)
        svc.metrics.registry.register(TelephonyCollector(self))
        self.idle = asyncio.Event()
        self.progress = asyncio.Event()
        self.consumed = 0
        self.skipped = 0
        self._unrecorded = 0  # blocks handled whose calls may not be written yet

    async def run(self) -> None:
        """Run the AMI link and the consumer until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.client.run(), name="ami-link")
                group.create_task(self._consume(), name="ami-consumer")
                group.create_task(self.publisher.run(), name="call-writer")
        finally:
            async with asyncio.timeout(SHUTDOWN_FLUSH):
                await self.publisher.flush()  # what the writer had not written yet

    def _keep(self, block: str) -> bool:
        """Parse only blocks the tracker can use; the rest count as consumed at once."""
        if wanted(block):
            return True
        self.skipped += 1
        self.consumed += 1
        self.progress.set()
        return False

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

    async def _resync(self) -> None:
        try:
            channels = await self.client.send_list_action({"Action": "CoreShowChannels"})
        except AmiError as exc:
            log.warning("cannot list channels after AMI login: %s", exc)
            return
        self._queue.put_nowait(Resync(channels, datetime.now(UTC)))

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
            self._unrecorded += sum(1 for item in batch if isinstance(item, dict))
            self._account()

    def _account(self) -> None:
        """Count the blocks handled as consumed once their calls are written
        (who waits for "consumed" may read the database)."""
        if not self.publisher.pending:
            self.consumed += self._unrecorded
            self._unrecorded = 0
        self.progress.set()

    async def _process(self, batch: list[Item]) -> None:
        events: list[CallEvent] = []
        for item in batch:
            events += self._feed(item)
        if not events:
            return
        try:
            await self.publisher.handle(events)
        except Exception:
            # One bad batch must not stop the worker; the calls stay in the tracker and
            # are recorded with their next event.
            log.exception("could not record %d call event(s)", len(events))

    def _feed(self, item: Item) -> list[CallEvent]:
        if isinstance(item, Resync):
            return self.tracker.resync(channels_of(item.channels), item.now)
        return self.tracker.feed_message(item)

    def active_calls(self) -> list[CallSnapshot]:
        """The calls in progress, for the supervisor wall."""
        return self.tracker.active_calls()


TELEPHONY: web.AppKey[TelephonyService] = web.AppKey("telephony", TelephonyService)
