"""Sink of the call tracker: record calls, create call-back tasks, push ``call.*`` events.

Per batch of tracker events: one transaction upserts the latest snapshot of
every call touched (idempotent by Linkedid, two statements per batch), then
each event is published with the call JSON as known at that event.
``call.ringing`` carries the caller's card: matched contacts, their last
interactions (calls, notes and e-mails) and open tasks. The caller is looked up once
per call and number, the card built once per call while it rings.
"""

from __future__ import annotations

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

    async def handle(self, events: Sequence[CallEvent]) -> None:
        """Record one batch of tracker events, then publish them in order."""
        latest = {e.call.linkedid: e.call for e in events}
        async with self._svc.sessions.begin() as session:
            contacts = {lid: await self._contact_ids(session, c) for lid, c in latest.items()}
            ids = await record_calls(
                session, [(c, contacts[lid]) for lid, c in latest.items()], self._region
            )
            outgoing = [await self._message(session, e, ids, contacts) for e in events]
            outgoing += await self._callbacks(session, events, ids, contacts)
        for type_, payload, audience in outgoing:
            self._svc.hub.publish(type_, payload, audience)
            self._svc.metrics.push_events.labels(type=type_).inc()
        for event in events:
            if isinstance(event, CallEnded):
                self._forget(event.call)

    def _forget(self, call: CallSnapshot) -> None:
        self._matches.pop(call.linkedid, None)
        self._cards.pop(call.linkedid, None)
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

    async def _message(
        self,
        session: AsyncSession,
        event: CallEvent,
        ids: dict[str, int],
        contacts: dict[str, list[int]],
    ) -> Outgoing:
        linkedid = event.call.linkedid
        preview = call_preview(ids[linkedid], event.call, contacts[linkedid], self._region)
        payload: dict[str, Any] = {
            "call": call_json(preview),
            "agent": getattr(event, "agent", None),
        }
        if isinstance(event, CallRinging):
            payload["card"] = await self._card(session, event.call)
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
