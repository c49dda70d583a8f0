"""The call log's database work, in two kinds of hop (see :class:`core.dbthread.DbWorker`).

- :func:`prepare` (a read, what the events of a batch wait for): the ids of
  new calls (the logged one after a replay or a restart, else a reserved
  fresh one), the contacts matching new numbers, and the cards of new pops.
  Nothing is written, so a pop never waits for a commit or for other calls.
- :func:`write` (the write-behind): upserts call snapshots with their ids and
  matched contacts, and creates the call-back tasks of missed calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.calls import call_ids, create_callback_task, record_calls, reserve_call_ids
from core.history import call_history, note_history, pending_tasks, task_json, timeline
from core.lookup import LookupResult, find_contacts
from core.mail.queries import email_history
from crmcomms.telephony.calls import CallSnapshot

CARD_RECENT = 10
CARD_SOURCES = (call_history, note_history, email_history)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a batch must read: ids for the ``new`` Linkedids (fresh ones above
    ``above``), ``lookups`` (Linkedid -> customer number), and the cards of
    ringing ``cards`` whose match is in ``matches`` or ``lookups``."""

    new: Sequence[str]
    lookups: dict[str, str]
    cards: dict[str, CallSnapshot]
    matches: dict[str, LookupResult | None]
    above: int
    region: str
    suffix_digits: int


@dataclass(slots=True)
class Prepared:
    """Ids, lookups and cards by Linkedid."""

    ids: dict[str, int]
    matches: dict[str, LookupResult | None]
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)


def prepare(needs: Needs, conn: Connection) -> Prepared:
    """Read what ``needs`` asks for (one read transaction)."""
    ids = call_ids(conn, needs.new) if needs.new else {}
    missing = [lid for lid in needs.new if lid not in ids]
    if missing:
        ids.update(zip(missing, reserve_call_ids(conn, len(missing), needs.above), strict=True))
    found = {
        lid: find_contacts(conn, number, needs.region, needs.suffix_digits) if number else None
        for lid, number in needs.lookups.items()
    }
    prepared = Prepared(ids, found)
    if needs.cards:
        matches = {**needs.matches, **found}
        with Session(bind=conn) as session:
            for lid, call in needs.cards.items():
                prepared.cards[lid] = card(session, call, matches.get(lid))
    return prepared


@dataclass(frozen=True, slots=True)
class Logged:
    """A call snapshot to write, with its id and matched contacts."""

    id: int
    call: CallSnapshot
    contacts: list[int]


@dataclass(frozen=True, slots=True)
class Work:
    """Snapshots to upsert and the missed calls needing a call-back task."""

    calls: Sequence[Logged]
    callbacks: Sequence[Logged]
    region: str


def write(work: Work, conn: Connection) -> list[dict[str, Any]]:
    """Upsert the snapshots and create the call-back tasks (one transaction);
    the tasks created, as JSON."""
    record_calls(conn, [(c.id, c.call, c.contacts) for c in work.calls], work.region)
    created = []
    for c in work.callbacks:
        task = create_callback_task(conn, c.id, c.call, c.contacts)
        if task is not None:
            created.append(task_json(task))
    return created


def contact_ids(result: LookupResult | None) -> list[int]:
    """The ids of the contacts a lookup matched."""
    return [match.id for match in result.matches] if result is not None else []


def card(session: Session, call: CallSnapshot, result: LookupResult | None) -> dict[str, Any]:
    """The screen-pop card: the matched contacts, their last interactions and open tasks."""
    matches = result.matches if result is not None else ()
    ids = [match.id for match in matches]
    recent = timeline(session, ids, limit=CARD_RECENT, sources=CARD_SOURCES)
    tasks = pending_tasks(session, ids) if ids else []
    return {
        "number": customer_number(call) or call.caller,
        "matches": [match.to_json() for match in matches],
        "match": result.match_kind if result is not None else "none",
        "unknown": not ids,
        "recent": [item.to_json() for item in recent],
        "tasks": [task_json(task) for task in tasks],
    }


def customer_number(call: CallSnapshot) -> str:
    """The outside party's number: the caller of inbound, the callee of outbound calls."""
    if call.direction == "inbound":
        return call.caller
    if call.direction == "outbound":
        return call.callee
    return ""
