"""Sink of the call tracker: record calls, create call-back tasks, push ``call.*`` events.

Per batch of tracker events: one transaction upserts the latest snapshot of
every call touched (idempotent by Linkedid, two statements per batch), then
each event is published with the call JSON as known at that event.

Write-behind: a batch needs the database only when a call is new (its id),
ends (the log is the source of truth once ``call.ended`` is out), changes
number (lookup) or rings without a card yet. Other batches only mark their
calls pending and publish at once with the cached ids; the pending snapshots
are written with the next transaction, by :meth:`CallPublisher.flush` (the
consumer calls it when the queue runs dry) or, on a busy link, by the first
batch once the oldest has waited :data:`WRITE_BEHIND_MAX` seconds.
``call.ringing`` carries the caller's card: matched contacts, their last
interactions (calls, notes and e-mails) and open tasks. The caller is looked up once
per call and number, the card built once per call while it rings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.calls import call_json, call_preview, create_callback_task, record_calls
from core.history import call_history, contact_history, note_history, open_tasks, task_json
from core.lookup import LookupResult, lookup_contacts
from core.mail.queries import email_history
from core.models import Task
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

EVENT_TYPES: dict[type, str] = {
    CallRinging: "call.ringing",
    CallAnswered: "call.answered",
    CallRingStopped: "call.ring_stopped",
    CallEnded: "call.ended",
}
CARD_RECENT = 10
#: Longest an intermediate snapshot waits to be written while the link stays busy.
WRITE_BEHIND_MAX = 0.1
Outgoing = tuple[str, dict[str, Any], Audience]


def customer_number(call: CallSnapshot) -> str:
    """The outside party's number: the caller of inbound, the callee of outbound calls."""
    if call.direction == "inbound":
        return call.caller
    if call.direction == "outbound":
        return call.callee
    return ""


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
                outgoing = await self._record(events)
            else:
                contacts = {e.call.linkedid: self._cached_contacts(e.call) for e in events}
                outgoing = [self._message(e, self._ids, contacts) for e in events]
            self._publish(outgoing)
        finally:  # the tracker is done with an ended call even if recording it failed
            for event in events:
                if isinstance(event, CallEnded):
                    self._forget(event.call)

    def _publish(self, outgoing: Sequence[Outgoing]) -> None:
        for type_, payload, audience in outgoing:
            self._svc.hub.publish(type_, payload, audience)
            self._svc.metrics.push_events.labels(type=type_).inc()

    async def flush(self) -> None:
        """Write the pending call snapshots now."""
        if self._pending:
            await self._record(())

    def _needs_database(self, events: Sequence[CallEvent]) -> bool:
        if time.monotonic() - self._pending_since >= WRITE_BEHIND_MAX:
            return True
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

    async def _record(self, events: Sequence[CallEvent]) -> list[Outgoing]:
        """One transaction: upsert every pending call, build the messages and call-back tasks."""
        latest = dict(self._pending)
        try:
            async with self._svc.sessions.begin() as session:
                contacts = {lid: await self._contact_ids(session, c) for lid, c in latest.items()}
                ids = await record_calls(
                    session, [(c, contacts[lid]) for lid, c in latest.items()], self._region
                )
                for event in events:
                    if isinstance(event, CallRinging):
                        await self._card(session, event.call)
                outgoing = [self._message(e, ids, contacts) for e in events]
                outgoing += await self._callbacks(session, events, ids, contacts)
        finally:
            # Written, or (on failure) given up like a failed batch used to be: each
            # call is recorded again with its next event (at once if it has no id yet).
            for lid, call in latest.items():
                if self._pending.get(lid) is call:
                    del self._pending[lid]
        self._ids.update(ids)
        return outgoing

    def _forget(self, call: CallSnapshot) -> None:
        self._matches.pop(call.linkedid, None)
        self._cards.pop(call.linkedid, None)
        self._ids.pop(call.linkedid, None)
        self._svc.metrics.calls.labels(status=call.status).inc()

    async def _lookup(self, session: AsyncSession, call: CallSnapshot) -> LookupResult | None:
        number = customer_number(call)
        known = self._matches.get(call.linkedid)
        if known is not None and known[0] == number:
            return known[1]
        result = None
        if number:
            suffix = self._svc.settings.lookup.suffix_digits
            result = await lookup_contacts(session, number, self._region, suffix)
        self._matches[call.linkedid] = (number, result)
        return result

    def _cached_contacts(self, call: CallSnapshot) -> list[int]:
        result = self._matches[call.linkedid][1]
        return [card.id for card in result.matches] if result is not None else []

    async def _contact_ids(self, session: AsyncSession, call: CallSnapshot) -> list[int]:
        result = await self._lookup(session, call)
        return [card.id for card in result.matches] if result is not None else []

    async def _card(self, session: AsyncSession, call: CallSnapshot) -> dict[str, Any]:
        card = self._cards.get(call.linkedid)
        if card is None:
            card = await self._build_card(session, call)
            self._cards[call.linkedid] = card
        return card

    async def _build_card(self, session: AsyncSession, call: CallSnapshot) -> dict[str, Any]:
        result = await self._lookup(session, call)
        matches = result.matches if result is not None else ()
        ids = [card.id for card in matches]
        recent = await contact_history(
            session, ids, limit=CARD_RECENT, sources=(call_history, note_history, email_history)
        )
        tasks = await open_tasks(session, ids) if ids else []
        return {
            "number": customer_number(call) or call.caller,
            "matches": [card.to_json() for card in matches],
            "match": result.match_kind if result is not None else "none",
            "unknown": not ids,
            "recent": [item.to_json() for item in recent],
            "tasks": [task_json(task) for task in tasks],
        }

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

    async def _callbacks(
        self,
        session: AsyncSession,
        events: Sequence[CallEvent],
        ids: dict[str, int],
        contacts: dict[str, list[int]],
    ) -> list[Outgoing]:
        created: list[Outgoing] = []
        for event in events:
            call = event.call
            if not _needs_callback(event):
                continue
            task = await create_callback_task(
                session, ids[call.linkedid], call, contacts[call.linkedid]
            )
            if task is not None:
                created.append(("task.created", {"task": task_json(task)}, _task_audience(task)))
        return created


def _needs_callback(event: CallEvent) -> bool:
    call = event.call
    return (
        isinstance(event, CallEnded)
        and call.direction == "inbound"
        and call.status in ("missed", "abandoned")
    )


def _task_audience(task: Task) -> Audience:
    return Audience(extensions=frozenset(task.assignees))
