"""The pop enricher: tracker events made ready for the agents and published at once.

A batch of tracker events goes out after one read if it needs one
(:func:`crmcomms.telephony.cards.read_for_pops`: ids of new calls, callers to look
up, cards of new pops; on SQLite a read on the loop's own thread that never waits
for a writer). The caller is looked up once per call and number, the card built
once per call while it rings; both are kept until the call's end is written.
Each event's call becomes one :class:`core.calls.CallRow`, shown as the call JSON
(:func:`core.calls.call_dict`) and handed to the call-log writer
(:mod:`crmcomms.telephony.call_log`), which writes it behind and sends
``call.ended`` once written. A pop never waits for a commit, a disk, or other
calls' writes.

``call.ringing`` carries the caller's card: matched contacts, their last
interactions (calls, notes and e-mails) and open tasks. ``call.transferred`` goes
to the transferring and the receiving agent, with the transfer (``from``, ``to``,
``kind``) and, for the receiver's pop, the card.

Which message a call event becomes is decided by one ``match`` over
:data:`~crmcomms.telephony.calls.CallEvent` ending in ``assert_never``: a new
kind of event that is not handled here fails mypy. One event that cannot be
published (a bug) is logged with its Linkedid and skipped; the rest of its batch
goes out.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, assert_never

from core.calls import CallRow, agents_of, call_dict, call_row
from core.dbthread import DbWorker
from core.lookup import LookupResult
from core.wrapup import customer_number
from crmcomms.metrics import Metrics
from crmcomms.push import Audience, Publisher
from crmcomms.telephony.call_log import CallLogWriter, EndedCall, Outgoing, publish
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
from crmcomms.telephony.cards import PopReads, contact_ids, read_for_pops

log = logging.getLogger(__name__)


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


class PopEnricher:
    """Gives tracker events their call's id, matched contacts and card, publishes
    them at once (``call.ended`` waits for the writer), and hands each call's row to
    the call-log writer."""

    def __init__(
        self,
        db: DbWorker,
        publisher: Publisher,
        metrics: Metrics,
        call_log: CallLogWriter,
        *,
        region: str,
        suffix_digits: int,
        queue_members: Callable[[str], Sequence[Mapping[str, Any]] | None] | None = None,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._metrics = metrics
        self._call_log = call_log
        self._region = region
        self._suffix_digits = suffix_digits
        self._queue_members = queue_members  # a queue call's members now, from presence
        self._matches: dict[str, tuple[str, LookupResult | None]] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._ids: dict[str, int] = {}
        self._above = 0  # the highest call id handed out

    async def handle(
        self, events: Sequence[CallEvent], arrived: Mapping[int, float] | None = None
    ) -> None:
        """Read what the events need (ids, callers, cards), publish all but
        ``call.ended`` at once, and leave their rows to the writer.

        ``arrived`` maps a ``call.ringing`` event (by ``id``) to when its AMI block
        arrived (``time.perf_counter``): the pop latency is observed once it is out."""
        needs = self._needs(events)
        if needs is not None:
            read = await self._db.read(functools.partial(read_for_pops, needs))
            for lid, result in read.matches.items():
                self._matches[lid] = (needs.lookups[lid], result)
            self._cards.update(read.cards)
            self._ids.update(read.ids)
            self._above = max(self._above, *read.ids.values(), 0)
        rows, live, ended = [], [], []
        for event in events:
            try:
                row = self._row(event.call)
                message = self._message(event, row)
            except Exception:
                log.exception(
                    "could not publish %s of call %s; skipped",
                    type(event).__name__,
                    event.call.linkedid,
                )
                continue
            rows.append(row)
            if isinstance(event, CallEnded):
                ended.append(EndedCall(row, message, _needs_callback(event)))
            else:
                live.append(message)
        publish(self._publisher, self._metrics, live)
        self._observe_pops(events, arrived or {})
        self._call_log.add(rows, ended)

    def forget(self, rows: Iterable[CallRow]) -> None:
        """Drop what is kept of calls whose end is written (unless the same Linkedid
        came again meanwhile: a replayed stream)."""
        for row in rows:
            lid = row.linkedid
            if self._call_log.holds(lid):
                continue
            self._matches.pop(lid, None)
            self._cards.pop(lid, None)
            self._ids.pop(lid, None)

    def _observe_pops(self, events: Sequence[CallEvent], arrived: Mapping[int, float]) -> None:
        """AMI block arrival -> its pop handed to the agents' websockets (hub or bus)."""
        now = time.perf_counter()
        for event in events:
            at = arrived.get(id(event))
            if at is not None:
                self._metrics.pop_latency.observe(now - at)

    def _needs(self, events: Sequence[CallEvent]) -> PopReads | None:
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
        return PopReads(
            new=list(new),
            lookups=lookups,
            cards=cards,
            matches={lid: self._matches[lid][1] for lid in cards if lid in self._matches},
            above=self._above,
            region=self._region,
            suffix_digits=self._suffix_digits,
        )

    def _row(self, call: CallSnapshot) -> CallRow:
        """The call's row: its id and matched contacts are known."""
        lid = call.linkedid
        return call_row(self._ids[lid], call, contact_ids(self._matches[lid][1]), self._region)

    def _message(self, event: CallEvent, row: CallRow) -> Outgoing:
        """The outgoing message of ``event`` (its call's card is known)."""
        members = None
        if row.queue and self._queue_members is not None:
            members = self._queue_members(row.queue)
        call = call_dict(row, row.contacts, self._region, members)
        payload: dict[str, Any] = {"call": call, "agent": agent_of(event)}
        if isinstance(event, CallRinging | CallTransferred):
            payload["card"] = self._cards[row.linkedid]
        if isinstance(event, CallTransferred):
            payload["transfer"] = transfer_json(event.transfer)
        return event_type(event), payload, audience_for(event)


def _needs_callback(event: CallEnded) -> bool:
    call = event.call
    return call.direction == "inbound" and call.status in ("missed", "abandoned")
