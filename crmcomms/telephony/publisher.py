"""Sink of the call tracker: record calls, create call-back tasks, push ``call.*`` events.

A batch of tracker events is published at once, after one read if it needs
one (:func:`crmcomms.telephony.record.prepare`: ids of new calls, callers
to look up, cards of new pops; on SQLite a read on the loop's own thread
that never waits for a writer). The call log is written behind, by
:meth:`CallPublisher.run`, a task that writes every pending snapshot in one
transaction on the database worker (:class:`core.dbthread.DbWorker`), then
publishes the batch's ``call.ended`` events and created call-back tasks: once
``call.ended`` is out the call is in the log, the source of truth. A pop
never waits for a commit, a disk, or other calls' writes; a call's row may
appear a few milliseconds after its first event. A write that fails is
logged and retried with everything that came since.
``call.ringing`` carries the caller's card: matched contacts, their last
interactions (calls, notes and e-mails) and open tasks. The caller is looked up once
per call and number, the card built once per call while it rings.
``call.transferred`` goes to the transferring and the receiving agent, with the
transfer (``from``, ``to``, ``kind``) and, for the receiver's pop, the card.

Which message a call event becomes is decided by one ``match`` over
:data:`~crmcomms.telephony.calls.CallEvent` ending in ``assert_never``: a new
kind of event that is not handled here fails mypy. One event that cannot be
published (a bug) is logged with its Linkedid and skipped; the rest of its batch
goes out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, assert_never

from core.calls import agents_of, preview_json
from core.lookup import LookupResult
from core.wrapup import customer_number
from crmcomms.push import Audience
from crmcomms.services import Services
from crmcomms.telephony.calls import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRinging,
    CallRingStopped,
    CallSnapshot,
    CallTransferred,
    Transfer,
)
from crmcomms.telephony.record import Logged, Needs, Work, contact_ids, prepare, write

log = logging.getLogger(__name__)

#: How long the writer lets events gather before it writes their calls.
WRITE_BEHIND_DELAY = 0.01
#: How long the writer waits after a failed write before it tries again.
RETRY_DELAY = 1.0
Outgoing = tuple[str, dict[str, Any], Audience]


def audience_of(call: CallSnapshot, agent: str | None = None) -> Audience:
    """The call's agents (:func:`core.calls.agents_of`, as stored in ``call_agents``)
    and the agent concerned."""
    involved = agents_of(call)
    return Audience(extensions=involved | {agent} if agent else involved)


def audience_for(event: CallEvent) -> Audience:
    """A pop (and its withdrawal) goes to the ringing agent, a transfer to the agents
    handing over and taking over; the rest to everyone involved."""
    match event:
        case CallRinging() | CallRingStopped():
            return Audience.of(event.agent)
        case CallTransferred(transfer=transfer):
            return Audience.of(*{transfer.from_ext, transfer.to_ext} - {""})
        case CallAnswered():
            return audience_of(event.call, event.agent)
        case CallEnded():
            return audience_of(event.call)
        case _:
            assert_never(event)


def event_type(event: CallEvent) -> str:
    """The websocket event type of a call event."""
    match event:
        case CallRinging():
            return "call.ringing"
        case CallAnswered():
            return "call.answered"
        case CallRingStopped():
            return "call.ring_stopped"
        case CallTransferred():
            return "call.transferred"
        case CallEnded():
            return "call.ended"
        case _:
            assert_never(event)


def agent_of(event: CallEvent) -> str | None:
    """The extension an event concerns: the ringing/answering agent, a transfer's receiver."""
    match event:
        case CallRinging() | CallAnswered() | CallRingStopped():
            return event.agent
        case CallTransferred(transfer=transfer):
            return transfer.to_ext or None
        case CallEnded():
            return None
        case _:
            assert_never(event)


def transfer_json(transfer: Transfer) -> dict[str, str]:
    """A transfer as the call JSON shows it."""
    return {"from": transfer.from_ext, "to": transfer.to_ext, "kind": transfer.kind}


class CallPublisher:
    """Records tracker events and publishes them to the agents concerned."""

    def __init__(self, svc: Services, on_written: Callable[[], None] = lambda: None) -> None:
        self._svc = svc
        self._region = svc.settings.general.default_region
        self._on_written = on_written
        self._matches: dict[str, tuple[str, LookupResult | None]] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._ids: dict[str, int] = {}
        self._above = 0  # the highest call id handed out
        self._pending: dict[str, CallSnapshot] = {}
        self._ended: list[CallEnded] = []
        self._writing = False
        self._dirty = asyncio.Event()

    @property
    def pending(self) -> bool:
        """Whether some calls are not written yet (or their ``call.ended`` not sent)."""
        return bool(self._pending or self._ended or self._writing)

    async def handle(
        self, events: Sequence[CallEvent], arrived: Mapping[int, float] | None = None
    ) -> None:
        """Read what the events need (ids, callers, cards), publish all but
        ``call.ended`` at once, and leave the snapshots to the writer.

        ``arrived`` maps a ``call.ringing`` event (by ``id``) to when its AMI block
        arrived (``time.perf_counter``): the pop latency is observed once it is out."""
        needs = self._needs(events)
        if needs is not None:
            prepared = await self._svc.db.read(functools.partial(prepare, needs))
            for lid, result in prepared.matches.items():
                self._matches[lid] = (needs.lookups[lid], result)
            self._cards.update(prepared.cards)
            self._ids.update(prepared.ids)
            self._above = max(self._above, *prepared.ids.values(), 0)
        live = []
        for event in events:
            self._pending[event.call.linkedid] = event.call
            if isinstance(event, CallEnded):
                self._ended.append(event)
            else:
                live.append(event)
        self._publish(self._messages(live))
        self._observe_pops(live, arrived or {})
        self._dirty.set()

    async def run(self) -> None:
        """The writer: writes what is pending, then publishes the ended calls."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await asyncio.sleep(WRITE_BEHIND_DELAY)  # let a burst of events gather
            if not await self._write():
                await asyncio.sleep(RETRY_DELAY)
                self._dirty.set()

    async def flush(self) -> None:
        """Write what is pending now (at shutdown)."""
        if self._pending or self._ended:
            await self._write()

    async def _write(self) -> bool:
        pending, self._pending = self._pending, {}
        ended, self._ended = self._ended, []
        logged = {lid: Logged(self._ids[lid], c, self._contacts(lid)) for lid, c in pending.items()}
        work = Work(
            calls=list(logged.values()),
            callbacks=[logged[e.call.linkedid] for e in ended if _needs_callback(e)],
            region=self._region,
        )
        self._writing = True
        try:
            tasks = await self._svc.db.run(functools.partial(write, work))
        except Exception:
            log.exception("could not record %d call(s); retrying", len(pending))
            for lid, call in pending.items():  # unless a newer snapshot came meanwhile
                self._pending.setdefault(lid, call)
            self._ended[:0] = ended
            return False
        finally:
            self._writing = False
        outgoing = self._messages(ended)
        outgoing += [
            ("task.created", {"task": task}, Audience(extensions=frozenset(task["assignees"])))
            for task in tasks
        ]
        self._publish(outgoing)
        for event in ended:
            self._forget(event.call)
        self._on_written()
        return True

    def _publish(self, outgoing: Sequence[Outgoing]) -> None:
        for type_, payload, audience in outgoing:
            self._svc.publisher.publish(type_, payload, audience)
            self._svc.metrics.push_events.labels(type=type_).inc()

    def _observe_pops(self, events: Sequence[CallEvent], arrived: Mapping[int, float]) -> None:
        """AMI block arrival -> its pop handed to the agents' websockets (hub or bus)."""
        now = time.perf_counter()
        for event in events:
            at = arrived.get(id(event))
            if at is not None:
                self._svc.metrics.pop_latency.observe(now - at)

    def _needs(self, events: Sequence[CallEvent]) -> Needs | None:
        """What ``events`` need from the database before they can go out, if anything."""
        new: dict[str, None] = {}
        lookups: dict[str, str] = {}
        cards: dict[str, CallSnapshot] = {}
        for event in events:
            call = event.call
            lid = call.linkedid
            if lid not in self._ids:
                new[lid] = None
            number = customer_number(call)
            known = self._matches.get(lid)
            if known is None or known[0] != number:
                lookups[lid] = number
            if isinstance(event, CallRinging | CallTransferred) and lid not in self._cards:
                cards[lid] = call
        if not (new or lookups or cards):
            return None
        return Needs(
            new=list(new),
            lookups=lookups,
            cards=cards,
            matches={lid: self._matches[lid][1] for lid in cards if lid in self._matches},
            above=self._above,
            region=self._region,
            suffix_digits=self._svc.settings.lookup.suffix_digits,
        )

    def _forget(self, call: CallSnapshot) -> None:
        self._svc.metrics.calls.labels(status=call.status).inc()
        lid = call.linkedid
        if lid in self._pending:  # the same Linkedid again (a replayed stream)
            return
        self._matches.pop(lid, None)
        self._cards.pop(lid, None)
        self._ids.pop(lid, None)

    def _contacts(self, linkedid: str) -> list[int]:
        return contact_ids(self._matches[linkedid][1])

    def _messages(self, events: Sequence[CallEvent]) -> list[Outgoing]:
        """The outgoing messages of ``events``; one that fails is logged and skipped."""
        outgoing = []
        for event in events:
            try:
                outgoing.append(self._message(event))
            except Exception:
                log.exception(
                    "could not publish %s of call %s; skipped",
                    type(event).__name__,
                    event.call.linkedid,
                )
        return outgoing

    def _message(self, event: CallEvent) -> Outgoing:
        """The outgoing message of ``event`` (its call's id, match and card are known)."""
        linkedid = event.call.linkedid
        call = preview_json(self._ids[linkedid], event.call, self._contacts(linkedid), self._region)
        payload: dict[str, Any] = {"call": call, "agent": agent_of(event)}
        if isinstance(event, CallRinging | CallTransferred):
            payload["card"] = self._cards[linkedid]
        if isinstance(event, CallTransferred):
            payload["transfer"] = transfer_json(event.transfer)
        return event_type(event), payload, audience_for(event)


def _needs_callback(event: CallEvent) -> bool:
    call = event.call
    return (
        isinstance(event, CallEnded)
        and call.direction == "inbound"
        and call.status in ("missed", "abandoned")
    )
