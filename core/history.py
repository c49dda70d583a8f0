"""One timeline per contact (or organization): calls, notes and tasks, newest first.

Paged by a keyset cursor, not an offset: the timeline is ordered by (time,
kind, id), newest first, and a page starts after the last entry of the one
before (:class:`HistoryCursor`). Each source is asked for ``limit + 1`` rows
after the cursor (:meth:`HistoryCursor.where`), the merged list is cut at ``limit``: a
contact with thousands of entries pages as fast as one with ten, entries that
share a timestamp are neither repeated nor skipped, and new entries arriving
meanwhile do not shift the next page. E-mails join through
:data:`HistorySource` functions added by the mail module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    FromClause,
    Row,
    Select,
    SQLColumnExpression,
    and_,
    bindparam,
    exists,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.calls import call_dict
from core.models import Agent, AgentExtension, Call, CallAgent, CallContact, Contact, Note, Task
from core.paging import decode_cursor, encode_cursor
from core.times import json_time


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One entry of a timeline."""

    kind: str
    at: datetime
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": json_time(self.at), **self.data}

    @property
    def key(self) -> tuple[datetime, str, int]:
        """The item's place in the timeline (sorted newest first)."""
        return (self.at, self.kind, int(self.data["id"]))


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """A place in a timeline: the (time, kind, id) of the last entry of a page."""

    at: datetime
    kind: str
    id: int

    def encode(self) -> str:
        """The opaque text form handed to clients (``next``, sent back as ``before``)."""
        return encode_cursor(self.at, self.kind, self.id)

    @classmethod
    def decode(cls, raw: str) -> HistoryCursor:
        """A cursor from :meth:`encode`; ValueError for anything else."""
        moment, (kind, number) = decode_cursor(raw, 2)
        if not number.isdigit() or not kind.isalpha():
            raise ValueError("not a cursor")
        return cls(moment, kind, int(number))

    def where(
        self, kind: str, at: SQLColumnExpression[datetime], id_: SQLColumnExpression[int]
    ) -> ColumnElement[bool]:
        """The condition on a source's time and id columns for its rows after this
        cursor; ``kind`` is the source's. At the cursor's very time, the kinds that
        sort before the cursor's come later (all their rows), those after it came
        before (none), and the cursor's own kind continues below its id."""
        if kind == self.kind:
            return or_(at < self.at, and_(at == self.at, id_ < self.id))
        return at <= self.at if kind < self.kind else at < self.at


class HistorySource(Protocol):
    """``source(session, contact_ids, limit, before)``: the latest items of one kind,
    newest first (then highest id first), after the cursor ``before`` when given.

    Sources are synchronous so that a batch of them runs in one hop: on the
    telephony worker's database thread (the screen-pop card), or through
    ``AsyncSession.run_sync`` (the HTTP API). Their statements are built once,
    with the ids and the limit as parameters.
    """

    def __call__(
        self,
        session: Session,
        contact_ids: Sequence[int],
        limit: int,
        before: HistoryCursor | None = None,
    ) -> list[HistoryItem]: ...


def _paged(
    stmt: Select[Any], table: FromClause, kind: str, at: str, before: HistoryCursor | None
) -> Select[Any]:
    """``stmt`` limited to the rows after the cursor ``before`` (None: from the newest)."""
    if before is None:
        return stmt
    return stmt.where(before.where(kind, table.c[at], table.c.id))


_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_LIMIT: BindParameter[int] = bindparam("limit")
# Core statements on the tables (rows, not ORM objects: a card is on the pop's path)
_calls, _links, _agents = Call.__table__, CallContact.__table__, CallAgent.__table__
_notes, _tasks = Note.__table__, Task.__table__
_CALLS = (
    select(_calls)
    .where(_calls.c.id.in_(select(_links.c.call_id).where(_links.c.contact_id.in_(_IDS))))
    .order_by(_calls.c.started_at.desc(), _calls.c.id.desc())
    .limit(_LIMIT)
)
_AGENT_CALLS = _CALLS.where(
    exists().where(
        _agents.c.call_id == _calls.c.id,
        _agents.c.extension.in_(bindparam("extensions", expanding=True)),
    )
)
_CALL_LINKS = select(_links.c.call_id, _links.c.contact_id, _links.c.match).where(
    _links.c.call_id.in_(bindparam("calls", expanding=True))
)
_AGENT_NAMES = (
    select(AgentExtension.extension, Agent.name)
    .join(Agent, Agent.id == AgentExtension.agent_id)
    .where(AgentExtension.extension.in_(bindparam("extensions", expanding=True)))
)
_NOTES = (
    select(_notes)
    .where(_notes.c.contact_id.in_(_IDS))
    .order_by(_notes.c.created_at.desc(), _notes.c.id.desc())
    .limit(_LIMIT)
)
_TASKS = (
    select(_tasks)
    .where(_tasks.c.contact_id.in_(_IDS))
    .order_by(_tasks.c.created_at.desc(), _tasks.c.id.desc())
    .limit(_LIMIT)
)
_OPEN_TASKS = (
    select(_tasks)
    .where(_tasks.c.contact_id.in_(_IDS), _tasks.c.done.is_(False))
    .order_by(_tasks.c.created_at.desc())
    .limit(_LIMIT)
)


def call_source(region: str, extensions: frozenset[str] | None = None) -> HistorySource:
    """The calls of the contacts (a :data:`HistorySource`), numbers formatted for ``region``;
    with ``extensions`` only the calls these agent extensions took part in.

    A call item is the call's JSON plus ``match`` (how the timeline's contact was
    matched: exact, suffix, several, manual), ``number`` and ``number_display`` (the
    customer's number as dialled or presented, and formatted), and ``agent_name``
    (the agent who answered or placed it)."""

    def source(
        session: Session,
        contact_ids: Sequence[int],
        limit: int,
        before: HistoryCursor | None = None,
    ) -> list[HistoryItem]:
        params: dict[str, Any] = {"ids": list(contact_ids), "limit": limit}
        if extensions is None:
            stmt = _CALLS
        elif not extensions:
            return []
        else:
            params["extensions"] = sorted(extensions)
            stmt = _AGENT_CALLS
        rows = session.execute(_paged(stmt, _calls, "call", "started_at", before), params).all()
        return _call_items(session, rows, contact_ids, region)

    return source


#: All calls of the contacts, numbers in international format (see :func:`call_source`).
call_history: HistorySource = call_source("ZZ")


def agent_call_history(extensions: frozenset[str], region: str = "ZZ") -> HistorySource:
    """:func:`call_history` limited to the calls these agent extensions took part in."""
    return call_source(region, extensions)


def visible_sources(
    sources: Sequence[HistorySource], extensions: frozenset[str] | None, region: str = "ZZ"
) -> tuple[HistorySource, ...]:
    """``sources`` as seen by an agent with ``extensions`` (None: a supervisor, who
    sees everything): :func:`call_history` becomes :func:`call_source` for them and
    ``region``."""
    own = call_source(region, extensions)
    return tuple(own if source is call_history else source for source in sources)


def _call_items(
    session: Session, rows: Sequence[Row[Any]], wanted: Sequence[int], region: str
) -> list[HistoryItem]:
    if not rows:
        return []
    contacts: dict[int, list[int]] = {row.id: [] for row in rows}
    matches: dict[int, tuple[int, str]] = {}  # call -> (rank of the contact in wanted, match)
    rank = {contact_id: n for n, contact_id in enumerate(wanted)}
    for call_id, contact_id, match in session.execute(_CALL_LINKS, {"calls": list(contacts)}):
        contacts[call_id].append(contact_id)
        if contact_id in rank and rank[contact_id] < matches.get(call_id, (len(rank), ""))[0]:
            matches[call_id] = (rank[contact_id], match)
    names = _agent_names(session, {_agent_of(row) for row in rows} - {None})
    items = []
    for row in rows:
        data = call_dict(row, contacts[row.id], region)
        outside = "caller" if row.direction == "inbound" else "callee"
        number = "" if row.direction == "internal" else getattr(row, outside)
        agent = _agent_of(row)
        data |= {
            "match": matches[row.id][1] if row.id in matches else None,
            "number": number,
            "number_display": data[f"{outside}_display"] if number else "",
            "agent_name": names.get(agent) if agent else None,
        }
        items.append(HistoryItem("call", row.started_at, data))
    return items


def _agent_of(row: Row[Any]) -> str | None:
    """The agent extension a timeline names: who answered, else who placed the call."""
    if row.answered_by:
        return str(row.answered_by)
    return str(row.caller) if row.direction in ("outbound", "internal") and row.caller else None


def _agent_names(session: Session, extensions: set[str | None]) -> dict[str, str]:
    wanted = sorted(e for e in extensions if e)
    if not wanted:
        return {}
    return {ext: name for ext, name in session.execute(_AGENT_NAMES, {"extensions": wanted})}


def note_history(
    session: Session,
    contact_ids: Sequence[int],
    limit: int,
    before: HistoryCursor | None = None,
) -> list[HistoryItem]:
    """The latest notes of these contacts (a :data:`HistorySource`)."""
    stmt = _paged(_NOTES, _notes, "note", "created_at", before)
    rows = session.execute(stmt, {"ids": list(contact_ids), "limit": limit})
    return [HistoryItem("note", n.created_at, note_json(n)) for n in rows]


def task_history(
    session: Session,
    contact_ids: Sequence[int],
    limit: int,
    before: HistoryCursor | None = None,
) -> list[HistoryItem]:
    """The latest tasks of these contacts (a :data:`HistorySource`)."""
    stmt = _paged(_TASKS, _tasks, "task", "created_at", before)
    rows = session.execute(stmt, {"ids": list(contact_ids), "limit": limit})
    return [HistoryItem("task", t.created_at, task_json(t)) for t in rows]


DEFAULT_SOURCES: tuple[HistorySource, ...] = (call_history, note_history, task_history)


def note_json(note: Note | Row[Any]) -> dict[str, Any]:
    """A note (or a row of ``notes``) as the API shows it."""
    return {
        "id": note.id,
        "contact_id": note.contact_id,
        "agent_id": note.agent_id,
        "call_id": note.call_id,
        "body": note.body,
    }


def task_json(task: Task | Row[Any]) -> dict[str, Any]:
    """A task (or a row of ``tasks``) as the API shows it."""
    return {
        "id": task.id,
        "task_kind": task.kind,
        "title": task.title,
        "contact_id": task.contact_id,
        "call_id": task.call_id,
        "number": task.number,
        "assignees": list(task.assignees),
        "queue": task.queue,
        "done": task.done,
        "created_at": json_time(task.created_at),
    }


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a timeline, and the cursor of the next one (None: this was the last)."""

    items: list[HistoryItem]
    next: HistoryCursor | None


async def contact_history(
    session: AsyncSession,
    contact_ids: Sequence[int],
    limit: int = 50,
    before: HistoryCursor | None = None,
    sources: Sequence[HistorySource] = DEFAULT_SOURCES,
) -> HistoryPage:
    """A page of the merged timeline of these contacts, newest first, after ``before``."""
    if not contact_ids:
        return HistoryPage([], None)
    return await session.run_sync(history_page, contact_ids, limit, before, sources)


def history_page(
    session: Session,
    contact_ids: Sequence[int],
    limit: int = 50,
    before: HistoryCursor | None = None,
    sources: Sequence[HistorySource] = DEFAULT_SOURCES,
) -> HistoryPage:
    """:func:`contact_history` on a synchronous session."""
    if not contact_ids:
        return HistoryPage([], None)
    items: list[HistoryItem] = []
    for source in sources:
        items += source(session, contact_ids, limit + 1, before)
    items.sort(key=lambda item: item.key, reverse=True)
    if len(items) <= limit:
        return HistoryPage(items, None)
    last = items[limit - 1]
    return HistoryPage(items[:limit], HistoryCursor(*last.key))


def timeline(
    session: Session,
    contact_ids: Sequence[int],
    limit: int = 50,
    sources: Sequence[HistorySource] = DEFAULT_SOURCES,
) -> list[HistoryItem]:
    """The latest ``limit`` entries of the merged timeline (the screen-pop card's)."""
    return history_page(session, contact_ids, limit, None, sources).items


async def organization_contact_ids(session: AsyncSession, organization_id: int) -> list[int]:
    """The contacts of an organization, whose timelines make the organization's."""
    rows = await session.scalars(
        select(Contact.id).where(Contact.organization_id == organization_id)
    )
    return list(rows)


async def add_note(
    session: AsyncSession, contact_id: int, body: str, agent_id: int | None, call_id: int | None
) -> Note:
    """Attach a note to a contact (and optionally a call)."""
    note = Note(contact_id=contact_id, body=body, agent_id=agent_id, call_id=call_id)
    session.add(note)
    await session.flush()
    return note


def pending_tasks(session: Session, contact_ids: Sequence[int], limit: int = 20) -> list[Row[Any]]:
    """Tasks not done yet for these contacts, newest first (rows of ``tasks``)."""
    return list(session.execute(_OPEN_TASKS, {"ids": list(contact_ids), "limit": limit}))
