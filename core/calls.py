"""The call log: idempotent upsert keyed by Linkedid, queries and the call's JSON form.

The tracker (in crmcomms) produces snapshots; anything with the attributes of
:class:`CallFacts` can be recorded, so core does not depend on the tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Call, CallContact, Task
from core.phones import normalise

FINAL_STATUSES = frozenset({"answered", "missed", "busy", "failed", "abandoned"})


class TransferFacts(Protocol):
    """One transfer of a call."""

    @property
    def from_ext(self) -> str: ...
    @property
    def to_ext(self) -> str: ...
    @property
    def kind(self) -> str: ...


class CallFacts(Protocol):
    """What the call tracker knows about a call (see crmcomms.telephony.calls.CallSnapshot)."""

    @property
    def linkedid(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def caller(self) -> str: ...
    @property
    def caller_name(self) -> str: ...
    @property
    def callee(self) -> str: ...
    @property
    def did(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def agents_rung(self) -> Sequence[str]: ...
    @property
    def answered_by(self) -> str | None: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def answered_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def ring_seconds(self) -> int: ...
    @property
    def talk_seconds(self) -> int: ...
    @property
    def hangup_cause(self) -> str: ...
    @property
    def recording(self) -> str | None: ...
    @property
    def transfers(self) -> Sequence[TransferFacts]: ...


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """The outcome of recording a snapshot: the row and whether it was new or now final."""

    call: Call
    created: bool
    became_final: bool


def _e164(number: str, region: str) -> str | None:
    parsed = normalise(number, region)
    return parsed.e164 if parsed is not None else None


def _apply(call: Call, facts: CallFacts, region: str) -> None:
    call.direction = facts.direction
    call.status = facts.status
    call.caller = facts.caller
    call.caller_e164 = _e164(facts.caller, region)
    call.caller_name = facts.caller_name
    call.callee = facts.callee
    call.callee_e164 = _e164(facts.callee, region)
    call.did = facts.did
    call.queue = facts.queue
    call.agents_rung = list(facts.agents_rung)
    call.answered_by = facts.answered_by
    call.started_at = facts.started_at
    call.answered_at = facts.answered_at
    call.ended_at = facts.ended_at
    call.ring_seconds = facts.ring_seconds
    call.talk_seconds = facts.talk_seconds
    call.hangup_cause = facts.hangup_cause
    call.recording_path = facts.recording
    call.transfers = [{"from": t.from_ext, "to": t.to_ext, "kind": t.kind} for t in facts.transfers]


async def record_call(
    session: AsyncSession, facts: CallFacts, contact_ids: Sequence[int], region: str
) -> RecordedCall:
    """Insert or update the call with this Linkedid; a final call is never reopened."""
    call = await session.scalar(select(Call).where(Call.linkedid == facts.linkedid))
    created = call is None
    if call is None:
        call = Call(linkedid=facts.linkedid, contacts=[])
        session.add(call)
    elif call.status in FINAL_STATUSES:
        return RecordedCall(call, created=False, became_final=False)
    _apply(call, facts, region)
    if not call.contacts and contact_ids:
        call.contacts = [CallContact(contact_id=cid) for cid in dict.fromkeys(contact_ids)]
    await session.flush()
    return RecordedCall(call, created, became_final=facts.status in FINAL_STATUSES)


async def create_callback_task(session: AsyncSession, call: Call) -> Task | None:
    """A "call back" task for a missed inbound call, once per call."""
    existing = await session.scalar(
        select(Task).where(Task.call_id == call.id, Task.kind == "callback")
    )
    if existing is not None:
        return None
    contact_id = call.contacts[0].contact_id if call.contacts else None
    task = Task(
        kind="callback",
        title=f"Call back {call.caller_name or call.caller or 'unknown caller'}",
        contact_id=contact_id,
        call_id=call.id,
        number=call.caller,
        assignees=list(call.agents_rung),
        queue=call.queue,
    )
    session.add(task)
    await session.flush()
    return task


def snapshot_row(row: Call, facts: CallFacts, region: str) -> Call:
    """A detached copy of ``row`` showing the call as ``facts`` knew it (for push events)."""
    preview = Call(id=row.id, linkedid=row.linkedid)
    _apply(preview, facts, region)
    preview.contacts = [CallContact(contact_id=link.contact_id) for link in row.contacts]
    return preview


def recording_url(call: Call) -> str | None:
    """Where the recording of ``call`` is served, if it has one."""
    return f"/api/calls/{call.id}/recording" if call.recording_path else None


def call_json(call: Call) -> dict[str, Any]:
    """The call as the HTTP API and the websocket show it."""
    return {
        "id": call.id,
        "linkedid": call.linkedid,
        "direction": call.direction,
        "status": call.status,
        "caller": call.caller,
        "caller_name": call.caller_name,
        "callee": call.callee,
        "did": call.did,
        "queue": call.queue,
        "agents_rung": list(call.agents_rung),
        "answered_by": call.answered_by,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "ring_seconds": call.ring_seconds,
        "talk_seconds": call.talk_seconds,
        "hangup_cause": call.hangup_cause,
        "recording_url": recording_url(call),
        "contacts": [link.contact_id for link in call.contacts],
        "transfers": list(call.transfers),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Filters of GET /api/calls; ``extensions`` limits to calls an agent was part of."""

    status: str | None = None
    agent: str | None = None
    contact: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    extensions: frozenset[str] | None = None


def _filtered(query: Select[Any], flt: CallFilter) -> Select[Any]:
    if flt.status:
        query = query.where(Call.status == flt.status)
    if flt.contact is not None:
        query = query.join(CallContact).where(CallContact.contact_id == flt.contact)
    if flt.since is not None:
        query = query.where(Call.started_at >= flt.since)
    if flt.until is not None:
        query = query.where(Call.started_at < flt.until)
    return query


def involves(call: Call, extensions: frozenset[str]) -> bool:
    """Whether any of ``extensions`` rang, answered or was transferred to in this call."""
    involved = set(call.agents_rung) | {call.answered_by or ""}
    involved |= {t.get("to", "") for t in call.transfers} | {
        t.get("from", "") for t in call.transfers
    }
    return bool(involved & extensions)


async def list_calls(session: AsyncSession, flt: CallFilter) -> list[Call]:
    """Calls newest first; agent/extension filters applied on the JSON lists."""
    query = _filtered(select(Call), flt).order_by(Call.started_at.desc(), Call.id.desc())
    wanted: list[Call] = []
    batch = max(flt.limit * 4, 200)
    offset = 0
    while len(wanted) < flt.limit:
        rows: list[Call] = list(await session.scalars(query.limit(batch).offset(offset)))
        wanted += [c for c in rows if _visible(c, flt)]
        if len(rows) < batch:
            break
        offset += batch
    return wanted[: flt.limit]


def _visible(call: Call, flt: CallFilter) -> bool:
    if flt.agent and not involves(call, frozenset({flt.agent})):
        return False
    return flt.extensions is None or involves(call, flt.extensions)


async def get_call(session: AsyncSession, call_id: int) -> Call:
    """One call by id; NotFound otherwise."""
    call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call
