"""Sink of the call tracker: record calls, create call-back tasks, push ``call.*`` events.

Per batch of tracker events: one transaction records the latest snapshot of
every call touched (idempotent by Linkedid), then each event is published with
the call JSON as known at that event. ``call.ringing`` carries the caller's
card: matched contacts, their last interactions and open tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.calls import call_json, create_callback_task, record_call, snapshot_row
from core.history import contact_history, open_tasks, task_json
from core.lookup import lookup_contacts
from core.models import Call, Task
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


class CallPublisher:
    """Records tracker events and publishes them to the agents concerned."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._region = svc.settings.general.default_region
        self._contacts: dict[str, list[int]] = {}

    async def handle(self, events: Sequence[CallEvent]) -> None:
        """Record one batch of tracker events, then publish them in order."""
        async with self._svc.sessions.begin() as session:
            rows = await self._record(session, events)
            cards = {
                e.call.linkedid: await self._card(session, e.call)
                for e in events
                if isinstance(e, CallRinging)
            }
            outgoing = [self._message(e, rows[e.call.linkedid], cards) for e in events]
            tasks = await self._callbacks(session, rows, events)
            outgoing += [
                ("task.created", {"task": task_json(task)}, _task_audience(call))
                for task, call in tasks
            ]
        for type_, payload, audience in outgoing:
            self._svc.hub.publish(type_, payload, audience)
            self._svc.metrics.push_events.labels(type=type_).inc()
        for event in events:
            if isinstance(event, CallEnded):
                self._contacts.pop(event.call.linkedid, None)

    async def _record(self, session: AsyncSession, events: Sequence[CallEvent]) -> dict[str, Call]:
        latest = {e.call.linkedid: e.call for e in events}
        rows = {}
        for linkedid, snapshot in latest.items():
            contacts = await self._match(session, snapshot)
            recorded = await record_call(session, snapshot, contacts, self._region)
            rows[linkedid] = recorded.call
            if recorded.became_final:
                self._svc.metrics.calls.labels(status=snapshot.status).inc()
        return rows

    async def _match(self, session: AsyncSession, call: CallSnapshot) -> list[int]:
        known = self._contacts.get(call.linkedid)
        if known:
            return known
        number = customer_number(call)
        if not number:
            return []
        settings = self._svc.settings
        result = await lookup_contacts(session, number, self._region, settings.lookup.suffix_digits)
        ids = [card.id for card in result.matches]
        self._contacts[call.linkedid] = ids
        return ids

    async def _card(self, session: AsyncSession, call: CallSnapshot) -> dict[str, Any]:
        number = customer_number(call) or call.caller
        settings = self._svc.settings
        result = await lookup_contacts(session, number, self._region, settings.lookup.suffix_digits)
        ids = [card.id for card in result.matches]
        recent = await contact_history(session, ids, limit=CARD_RECENT) if ids else []
        tasks = await open_tasks(session, ids) if ids else []
        return {
            "number": number,
            "matches": [card.to_json() for card in result.matches],
            "match": result.match_kind,
            "unknown": not ids,
            "recent": [item.to_json() for item in recent if item.kind != "task"],
            "tasks": [task_json(task) for task in tasks],
        }

    async def _callbacks(
        self, session: AsyncSession, rows: dict[str, Call], events: Sequence[CallEvent]
    ) -> list[tuple[Task, Call]]:
        created = []
        for event in events:
            call = event.call
            if isinstance(event, CallEnded) and call.direction == "inbound":
                if call.status in ("missed", "abandoned"):
                    task = await create_callback_task(session, rows[call.linkedid])
                    if task is not None:
                        created.append((task, rows[call.linkedid]))
        return created

    def _message(
        self, event: CallEvent, row: Call, cards: dict[str, dict[str, Any]]
    ) -> tuple[str, dict[str, Any], Audience]:
        agent = getattr(event, "agent", None)
        preview = snapshot_row(row, event.call, self._region)
        payload: dict[str, Any] = {"call": call_json(preview), "agent": agent}
        if isinstance(event, CallRinging):
            payload["card"] = cards[event.call.linkedid]
        return EVENT_TYPES[type(event)], payload, audience_for(event)


def audience_for(event: CallEvent) -> Audience:
    """A pop (and its withdrawal) goes to the ringing agent; the rest to everyone involved."""
    if isinstance(event, CallRinging | CallRingStopped):
        return Audience.of(event.agent)
    return audience_of(event.call, getattr(event, "agent", None))


def _task_audience(call: Call) -> Audience:
    return Audience(extensions=frozenset(call.agents_rung))
