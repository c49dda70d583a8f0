"""Sink of the call tracker: record calls, create call-back tasks, push ``call.*`` events.

Every database access is one hop to the database worker
(:class:`core.dbthread.DbWorker`, :mod:`crmcomms.telephony.record`): in one
transaction it upserts call snapshots (idempotent by Linkedid), looks up
new callers, builds cards and creates call-back tasks; then each event is
published with the call JSON as known at that event.

Write-behind: a batch needs the database only when a call is new (its id),
ends (the log is the source of truth once ``call.ended`` is out), changes
number (lookup) or rings without a card yet, and then it writes the calls of
that batch only, so that a pop never waits for other calls' snapshots. Other
batches only mark their calls pending and publish at once with the cached
ids; the pending snapshots are written by :meth:`CallPublisher.flush` (the
consumer calls it when the queue runs dry, and after a batch once the oldest
has waited :data:`WRITE_BEHIND_MAX` seconds on a busy link).
``call.ringing`` carries the caller's card: matched contacts, their last
interactions (calls, notes and e-mails) and open tasks. The caller is looked up once
per call and number, the card built once per call while it rings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

from core.calls import call_json, call_preview
from core.lookup import LookupResult
from crmcomms.push import Audience
from crmcomms.services import Services
from crmcomms.telephony.calls import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRinging,
    CallRingStopped,
    CallSnapshot,
)
from crmcomms.telephony.record import Work, contact_ids, customer_number, write

EVENT_TYPES: dict[type, str] = {
    CallRinging: "call.ringing",
    CallAnswered: "call.answered",
    CallRingStopped: "call.ring_stopped",
    CallEnded: "call.ended",
}
#: Longest an intermediate snapshot waits to be written while the link stays busy.
WRITE_BEHIND_MAX = 0.1
Outgoing = tuple[str, dict[str, Any], Audience]


def audience_of(call: CallSnapshot, agent: str | None = None) -> Audience:
    """Everyone involved: agents rung, who answered, who talked, and the agent concerned."""
    involved = {*call.agents_rung, *call.talked, call.caller, call.callee}
    involved |= {call.answered_by or "", agent or ""}
    for transfer in call.transfers:
        involved |= {transfer.from_ext, transfer.to_ext}
    involved.discard("")
    return Audience(extensions=frozenset(involved))


def audience_for(event: CallEvent) -> Audience:
    """A pop (and its withdrawal) goes to the ringing agent; the rest to everyone involved."""
    if isinstance(event, CallRinging | CallRingStopped):
        return Audience.of(event.agent)
    return audience_of(event.call, getattr(event, "agent", None))


class CallPublisher:
    """Records tracker events and publishes them to the agents concerned."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._region = svc.settings.general.default_region
        self._matches: dict[str, tuple[str, LookupResult | None]] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._ids: dict[str, int] = {}
        self._pending: dict[str, CallSnapshot] = {}
        self._pending_since = 0.0

    @property
    def pending(self) -> bool:
        """Whether some call snapshots wait to be written (see :meth:`flush`)."""
        return bool(self._pending)

    async def handle(self, events: Sequence[CallEvent]) -> None:
        """Record one batch of tracker events (now or write-behind), then publish them."""
        if not self._pending:
            self._pending_since = time.monotonic()
        for event in events:
            self._pending[event.call.linkedid] = event.call
        try:
            if self._needs_database(events):
                outgoing = await self._record(events, {e.call.linkedid for e in events})
            else:
                contacts = {e.call.linkedid: self._cached_contacts(e.call) for e in events}
                outgoing = [self._message(e, self._ids, contacts) for e in events]
            self._publish(outgoing)
        finally:  # the tracker is done with an ended call even if recording it failed
            for event in events:
                if isinstance(event, CallEnded):
                    self._forget(event.call)
        if self._pending and time.monotonic() - self._pending_since >= WRITE_BEHIND_MAX:
            await self.flush()

    def _publish(self, outgoing: Sequence[Outgoing]) -> None:
        for type_, payload, audience in outgoing:
            self._svc.hub.publish(type_, payload, audience)
            self._svc.metrics.push_events.labels(type=type_).inc()

    async def flush(self) -> None:
        """Write the pending call snapshots now."""
        if self._pending:
            await self._record((), set(self._pending))

    def _needs_database(self, events: Sequence[CallEvent]) -> bool:
        for event in events:
            call = event.call
            if isinstance(event, CallEnded) or call.linkedid not in self._ids:
                return True
            known = self._matches.get(call.linkedid)
            if known is None or known[0] != customer_number(call):
                return True
            if isinstance(event, CallRinging) and call.linkedid not in self._cards:
                return True
        return False

    async def _record(self, events: Sequence[CallEvent], calls: set[str]) -> list[Outgoing]:
        """One hop to the database worker: upsert the pending ``calls`` (Linkedids),
        look up new callers, build the cards of new pops and the call-back tasks."""
        latest = {lid: self._pending[lid] for lid in calls}
        work = self._work(latest, events)
        try:
            written = await self._svc.db.run(functools.partial(write, work))
        finally:
            # Written, or (on failure) given up like a failed batch used to be: each
            # call is recorded again with its next event (at once if it has no id yet).
            for lid, call in latest.items():
                if self._pending.get(lid) is call:
                    del self._pending[lid]
        for lid, result in written.matches.items():
            self._matches[lid] = (work.lookups[lid], result)
        self._cards.update(written.cards)
        self._ids.update(written.ids)
        contacts = {lid: self._cached_contacts(call) for lid, call in latest.items()}
        outgoing = [self._message(e, written.ids, contacts) for e in events]
        outgoing += [
            ("task.created", {"task": task}, Audience(extensions=frozenset(task["assignees"])))
            for task in written.tasks
        ]
        return outgoing

    def _work(self, latest: dict[str, CallSnapshot], events: Sequence[CallEvent]) -> Work:
        lookups: dict[str, str] = {}
        matches: dict[str, LookupResult | None] = {}
        for lid, call in latest.items():
            number = customer_number(call)
            known = self._matches.get(lid)
            if known is not None and known[0] == number:
                matches[lid] = known[1]
            else:
                lookups[lid] = number
        cards = {
            e.call.linkedid
            for e in events
            if isinstance(e, CallRinging) and e.call.linkedid not in self._cards
        }
        return Work(
            calls=latest,
            lookups=lookups,
            matches=matches,
            cards=sorted(cards),
            callbacks=[e.call.linkedid for e in events if _needs_callback(e)],
            region=self._region,
            suffix_digits=self._svc.settings.lookup.suffix_digits,
        )

    def _forget(self, call: CallSnapshot) -> None:
        self._matches.pop(call.linkedid, None)
        self._cards.pop(call.linkedid, None)
        self._ids.pop(call.linkedid, None)
        self._svc.metrics.calls.labels(status=call.status).inc()

    def _cached_contacts(self, call: CallSnapshot) -> list[int]:
        return contact_ids(self._matches[call.linkedid][1])

    def _message(
        self, event: CallEvent, ids: dict[str, int], contacts: dict[str, list[int]]
    ) -> Outgoing:
        """The outgoing message of ``event``; a ringing call's card must be cached already."""
        linkedid = event.call.linkedid
        preview = call_preview(ids[linkedid], event.call, contacts[linkedid], self._region)
        payload: dict[str, Any] = {
            "call": call_json(preview),
            "agent": getattr(event, "agent", None),
        }
        if isinstance(event, CallRinging):
            payload["card"] = self._cards[linkedid]
        return EVENT_TYPES[type(event)], payload, audience_for(event)


def _needs_callback(event: CallEvent) -> bool:
    call = event.call
    return (
        isinstance(event, CallEnded)
        and call.direction == "inbound"
        and call.status in ("missed", "abandoned")
    )
