"""The call log: idempotent upsert keyed by Linkedid, queries and the call's JSON form.

The tracker (in crmcomms) produces snapshots; anything with the attributes of
:class:`CallFacts` can be recorded, so core does not depend on the tracker.

One call vocabulary: :func:`call_row` turns the tracker's facts into a
:class:`CallRow` once per snapshot (the columns of ``calls``, with the call's
agents and matched contacts); :func:`record_calls` writes rows, and
:func:`call_dict` is the one call JSON, of a row, an ORM ``Call`` or a history
query's row alike (push, API, history, wall).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Call, CallAgent, CallContact, Task, utcnow
from core.phones import display_number, normalise
from core.times import json_time

#: A call in one of these is closed: only a CDR backfill may still correct it (see record_calls).
FINAL_STATUSES = frozenset({"answered", "missed", "busy", "failed", "abandoned", "unknown"})


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
    def ring_seconds(self) -> int | None: ...
    @property
    def talk_seconds(self) -> int | None: ...
    @property
    def hangup_cause(self) -> str: ...
    @property
    def recording(self) -> str | None: ...
    @property
    def transfers(self) -> Sequence[TransferFacts]: ...
    @property
    def talked(self) -> Sequence[str]: ...
    @property
    def times_uncertain(self) -> bool: ...
    @property
    def backfilled(self) -> bool: ...


class AgentRole(IntFlag):
    """How an agent extension took part in a call (bits of ``call_agents.roles``)."""

    RUNG = 1
    ANSWERED = 2
    TALKED = 4
    PLACED = 8  # the caller of an outbound or internal call
    CALLED = 16  # the callee of an internal call
    TRANSFERRED = 32  # handed the call on
    TRANSFER_TARGET = 64  # was handed the call


def roles_of(facts: CallFacts) -> dict[str, AgentRole]:
    """The one definition of the agents of a call: every extension that rang,
    answered, talked, placed it, was called on an internal call, or was a
    transfer's from or to; with how. An inbound caller is a customer, never an agent."""
    roles: dict[str, AgentRole] = {}

    def add(extension: str | None, role: AgentRole) -> None:
        if extension:
            roles[extension] = roles.get(extension, AgentRole(0)) | role

    for extension in facts.agents_rung:
        add(extension, AgentRole.RUNG)
    add(facts.answered_by, AgentRole.ANSWERED)
    for extension in facts.talked:
        add(extension, AgentRole.TALKED)
    if facts.direction in ("outbound", "internal"):
        add(facts.caller, AgentRole.PLACED)
    if facts.direction == "internal":
        add(facts.callee, AgentRole.CALLED)
    for transfer in facts.transfers:
        add(transfer.from_ext, AgentRole.TRANSFERRED)
        add(transfer.to_ext, AgentRole.TRANSFER_TARGET)
    return roles


def agents_of(facts: CallFacts) -> frozenset[str]:
    """The agent extensions of a call (:func:`roles_of`): its push audience and who may see it."""
    return frozenset(roles_of(facts))


@lru_cache(maxsize=8192)
def _e164(number: str, region: str) -> str | None:
    parsed = normalise(number, region)
    return parsed.e164 if parsed is not None else None


#: The columns of ``calls`` that :func:`record_calls` writes from the facts (besides linkedid).
FACT_COLUMNS = (
    "direction",
    "status",
    "caller",
    "caller_e164",
    "caller_name",
    "callee",
    "callee_e164",
    "did",
    "queue",
    "agents_rung",
    "answered_by",
    "started_at",
    "answered_at",
    "ended_at",
    "ring_seconds",
    "talk_seconds",
    "hangup_cause",
    "recording_path",
    "transfers",
    "times_uncertain",
    "backfilled",
)


@dataclass(frozen=True, slots=True)
class CallRow:
    """One call's row of ``calls`` as the tracker's facts fill it (:data:`FACT_COLUMNS`),
    with its agents (``call_agents``) and matched contacts (``call_contacts``).

    Built once per snapshot by :func:`call_row`; shown by :func:`call_dict`, written by
    :func:`record_calls`. ``recording_path`` is the full path MixMonitor writes.
    """

    id: int
    linkedid: str
    direction: str
    status: str
    caller: str
    caller_e164: str | None
    caller_name: str
    callee: str
    callee_e164: str | None
    did: str
    queue: str
    agents_rung: tuple[str, ...]
    answered_by: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    ring_seconds: int | None
    talk_seconds: int | None
    hangup_cause: str
    recording_path: str | None
    transfers: tuple[dict[str, str], ...]
    times_uncertain: bool
    backfilled: bool
    agents: Mapping[str, AgentRole]
    contacts: tuple[int, ...]

    def values(self) -> dict[str, Any]:
        """The columns of ``calls`` (the upsert's parameters)."""
        values = {name: getattr(self, name) for name in _ROW_COLUMNS}
        values["agents_rung"] = list(self.agents_rung)
        values["transfers"] = list(self.transfers)
        return values


_ROW_COLUMNS = ("id", "linkedid", *FACT_COLUMNS)


def call_row(call_id: int, facts: CallFacts, contact_ids: Sequence[int], region: str) -> CallRow:
    """The row of ``facts`` with id ``call_id`` and its matched contacts; the numbers
    normalised for ``region``."""
    return CallRow(
        id=call_id,
        linkedid=facts.linkedid,
        direction=facts.direction,
        status=facts.status,
        caller=facts.caller,
        caller_e164=_e164(facts.caller, region),
        caller_name=facts.caller_name,
        callee=facts.callee,
        callee_e164=_e164(facts.callee, region),
        did=facts.did,
        queue=facts.queue,
        agents_rung=tuple(facts.agents_rung),
        answered_by=facts.answered_by,
        started_at=facts.started_at,
        answered_at=facts.answered_at,
        ended_at=facts.ended_at,
        ring_seconds=facts.ring_seconds,
        talk_seconds=facts.talk_seconds,
        hangup_cause=facts.hangup_cause,
        recording_path=facts.recording,
        transfers=tuple(
            {"from": t.from_ext, "to": t.to_ext, "kind": t.kind} for t in facts.transfers
        ),
        times_uncertain=facts.times_uncertain,
        backfilled=facts.backfilled,
        agents=roles_of(facts),
        contacts=tuple(dict.fromkeys(contact_ids)),
    )


#: Times a later snapshot never turns back into "unknown". Not the durations: those of
#: a call in progress count to its last event and are replaced by the final ones.
_KEPT_WHEN_UNKNOWN = ("answered_at", "ended_at")


@lru_cache(maxsize=4)
def _upserts(dialect: str) -> tuple[Any, Any, Any]:
    """The calls upsert, the call-agents upsert and the contact-links insert, built
    once per dialect."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Table = Call.__table__  # type: ignore[assignment]
    statement = insert(table)
    new = statement.excluded
    # only what the tracker knows: an agent's columns (wrap-up...) are not the tracker's to reset
    set_: dict[str, Any] = {name: new[name] for name in FACT_COLUMNS}
    set_.update({name: func.coalesce(new[name], table.c[name]) for name in _KEPT_WHEN_UNKNOWN})
    set_["backfilled"] = or_(new.backfilled, table.c.backfilled)
    # constants, not an expanding IN parameter: executemany cannot expand one
    still_open = and_(*(table.c.status != literal_column(f"'{s}'") for s in sorted(FINAL_STATUSES)))
    uncertain = or_(table.c.times_uncertain, table.c.status == literal_column("'unknown'"))
    upsert = statement.on_conflict_do_update(
        index_elements=[table.c.linkedid],
        set_=set_,
        where=or_(still_open, and_(new.backfilled.is_(true()), uncertain)),
    )
    links = insert(CallContact.__table__).on_conflict_do_nothing()  # type: ignore[arg-type]
    return upsert, _agents_upsert(dialect), links


def _agents_upsert(dialect: str) -> Any:
    """Adds roles to ``call_agents`` (never removes: each snapshot's agents took part);
    ``started_at`` of a new row is copied from the call's row."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    agents: Table = CallAgent.__table__  # type: ignore[assignment]
    calls: Table = Call.__table__  # type: ignore[assignment]
    call_id = bindparam("call_id", type_=Integer)
    statement = insert(agents).values(
        call_id=call_id,
        extension=bindparam("extension"),
        roles=bindparam("roles", type_=Integer),
        started_at=select(calls.c.started_at).where(calls.c.id == call_id).scalar_subquery(),
    )
    return statement.on_conflict_do_update(
        index_elements=[agents.c.call_id, agents.c.extension],
        set_={"roles": agents.c.roles.op("|", return_type=Integer)(statement.excluded.roles)},
    )


def _agents_started_at() -> Any:
    """Copies the calls' ``started_at`` to their ``call_agents`` rows where it changed."""
    agents: Table = CallAgent.__table__  # type: ignore[assignment]
    calls: Table = Call.__table__  # type: ignore[assignment]
    started = select(calls.c.started_at).where(calls.c.id == agents.c.call_id).scalar_subquery()
    return (
        update(agents)
        .where(
            agents.c.call_id.in_(bindparam("ids", expanding=True)), agents.c.started_at != started
        )
        .values(started_at=started)
    )


_SYNC_STARTED_AT = _agents_started_at()


_IDS_OF = select(Call.linkedid, Call.id).where(
    Call.linkedid.in_(bindparam("linkedids", expanding=True))
)


def call_ids(conn: Connection, linkedids: Sequence[str]) -> dict[str, int]:
    """The ids of the calls already logged among ``linkedids``."""
    return {lid: id_ for lid, id_ in conn.execute(_IDS_OF, {"linkedids": list(linkedids)})}


def reserve_call_ids(conn: Connection, count: int, above: int = 0) -> list[int]:
    """``count`` fresh call ids, so that a call has its id before its row is written.

    PostgreSQL: from the table's sequence. SQLite: above the highest id in the
    table and above ``above`` (the last id handed out and maybe not written
    yet); the one process that writes calls must pass it.
    """
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('calls', 'id')) FROM generate_series(1, :n)"
            ),
            {"n": count},
        )
        return [row[0] for row in rows]
    highest = conn.execute(select(func.coalesce(func.max(Call.id), 0))).scalar_one()
    first = max(highest, above) + 1
    return list(range(first, first + count))


def record_calls(conn: Connection, rows: Sequence[CallRow]) -> None:
    """Upsert each row by Linkedid, with its agents and contact links.

    Four statements whatever the batch size. The id is the one
    :func:`call_ids` found or :func:`reserve_call_ids` gave. A call already
    in a final state is never reopened or changed, so replaying a stream (or a
    reconnect) neither duplicates nor alters it; except that a ``backfilled``
    row (from the CDR) corrects a closed call whose times are uncertain.
    A known answer or end time is never overwritten by an unknown (None) one.
    The call's agents (:func:`roles_of`) are added to ``call_agents``.
    Synchronous: run it in one hop (``core.dbthread.DbWorker`` or ``run_sync``).
    """
    if not rows:
        return
    upsert, upsert_agents, insert_links = _upserts(conn.dialect.name)
    conn.execute(upsert, [row.values() for row in rows])
    agents = [
        {"call_id": row.id, "extension": extension, "roles": int(roles)}
        for row in rows
        for extension, roles in row.agents.items()
    ]
    if agents:
        conn.execute(upsert_agents, agents)
    conn.execute(_SYNC_STARTED_AT, {"ids": [row.id for row in rows]})
    links = [
        {"call_id": row.id, "contact_id": contact_id} for row in rows for contact_id in row.contacts
    ]
    if links:
        conn.execute(insert_links, links)


@lru_cache(maxsize=4)
def _callback_insert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    tasks: Table = Task.__table__  # type: ignore[assignment]
    return insert(tasks).on_conflict_do_nothing().returning(*tasks.c)


def create_callback_task(conn: Connection, call: CallRow) -> Row[Any] | None:
    """A "call back" task for a missed inbound call, once per call (the row created,
    ``None`` if the call has one already)."""
    values = {
        "kind": "callback",
        "title": f"Call back {call.caller_name or call.caller or 'unknown caller'}",
        "contact_id": call.contacts[0] if call.contacts else None,
        "call_id": call.id,
        "number": call.caller,
        "assignees": list(call.agents_rung),
        "queue": call.queue,
        "done": False,
        "created_at": utcnow(),
    }
    return conn.execute(_callback_insert(conn.dialect.name), values).first()


def recording_url(call: Any) -> str | None:
    """Where the recording of ``call`` is served, if it has one."""
    return f"/api/calls/{call.id}/recording" if call.recording_path else None


def call_json(call: Call, region: str = "ZZ") -> dict[str, Any]:
    """The JSON (:func:`call_dict`) of a logged call, with its contact links."""
    return call_dict(call, [link.contact_id for link in call.contacts], region)


def call_dict(
    call: Any,
    contact_ids: Sequence[int],
    region: str = "ZZ",
    queue_members: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The one call JSON, of anything with the columns of ``calls`` as attributes (a
    :class:`CallRow`, an ORM ``Call``, a query's row): what the push, the API, the
    history and the wall show. ``*_display``: the numbers formatted for ``region``
    (``ZZ``: international). A field added here reaches every one of them.

    ``queue_members``: in a live push of a queue call, the queue's members as the
    PBX last reported them (``paused``, ``paused_reason``, ``device``, ``in_call``);
    ``null`` where that is not known (a logged call read back, no queue status yet)."""
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
        "started_at": json_time(call.started_at),
        "answered_at": json_time(call.answered_at),
        "ended_at": json_time(call.ended_at),
        "ring_seconds": call.ring_seconds,
        "talk_seconds": call.talk_seconds,
        "hangup_cause": call.hangup_cause,
        "recording_url": recording_url(call),
        "contacts": list(contact_ids),
        "transfers": list(call.transfers),
        "times_uncertain": bool(call.times_uncertain),
        "backfilled": bool(call.backfilled),
        "disposition": getattr(call, "disposition", None),
        "caller_display": display_number(call.caller_e164 or call.caller, region),
        "callee_display": display_number(call.callee_e164 or call.callee, region),
        "did_display": display_number(call.did, region),
        "queue_members": None if queue_members is None else [dict(m) for m in queue_members],
    }


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


async def list_calls(session: AsyncSession, flt: CallFilter) -> list[Call]:
    """Calls newest first. With an agent filter or an agent's own extensions, one
    range of ``call_agents``' (extension, started_at) index per extension."""
    if flt.agent is None and flt.extensions is None:
        query = _filtered(select(Call), flt).order_by(Call.started_at.desc(), Call.id.desc())
        return list(await session.scalars(query.limit(flt.limit)))
    extensions = {flt.agent} if flt.agent else flt.extensions or set()
    if not extensions:
        return []
    ranges = [_agent_range(extension, flt).subquery() for extension in sorted(extensions)]
    found = ranges[0] if len(ranges) == 1 else union(*(select(r) for r in ranges)).subquery()
    query = (
        select(Call)
        .join(found, Call.id == found.c.call_id)
        .order_by(found.c.started_at.desc(), found.c.call_id.desc())
        .limit(flt.limit)
    )
    return list(await session.scalars(query))


def _agent_range(extension: str, flt: CallFilter) -> Select[int, datetime]:
    """The newest ``flt.limit`` calls of one extension that pass the filters.

    The other filters are correlated lookups by primary key, so that the
    database walks this extension's index range and nothing else.
    """
    ca = CallAgent
    query = select(ca.call_id, ca.started_at).where(ca.extension == extension)
    if flt.since is not None:
        query = query.where(ca.started_at >= flt.since)
    if flt.until is not None:
        query = query.where(ca.started_at < flt.until)
    if flt.status:
        status = select(Call.status).where(Call.id == ca.call_id).scalar_subquery()
        query = query.where(status == flt.status)
    if flt.contact is not None:
        query = query.where(
            exists().where(CallContact.call_id == ca.call_id, CallContact.contact_id == flt.contact)
        )
    if flt.extensions is not None and extension not in flt.extensions:
        query = query.where(_has_agent(ca.call_id, flt.extensions))
    return query.order_by(ca.started_at.desc(), ca.call_id.desc()).limit(flt.limit)


def _has_agent(call_id: Any, extensions: frozenset[str]) -> ColumnElement[bool]:
    other = CallAgent.__table__.alias("other_agent")
    return exists().where(other.c.call_id == call_id, other.c.extension.in_(extensions))


async def call_has_agent(session: AsyncSession, call_id: int, extensions: frozenset[str]) -> bool:
    """Whether any of ``extensions`` took part in the call (``call_agents``)."""
    if not extensions:
        return False
    return bool(await session.scalar(select(_has_agent(call_id, extensions))))


async def get_call(session: AsyncSession, call_id: int) -> Call:
    """One call by id; NotFound otherwise."""
    call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call
