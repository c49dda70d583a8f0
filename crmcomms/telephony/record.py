"""One batch of the call log, done in one hop on the database worker.

The publisher collects what a batch of tracker events needs from the database
(callers to look up, calls to upsert, cards to build, call-back tasks to
create) into a :class:`Work`; :func:`write` does all of it synchronously in
one transaction (on SQLite, on the database thread of
:class:`core.dbthread.DbWorker`) and returns a :class:`Written`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.calls import create_callback_task, record_calls
from core.history import call_history, note_history, pending_tasks, task_json, timeline
from core.lookup import LookupResult, find_contacts
from core.mail.queries import email_history
from crmcomms.telephony.calls import CallSnapshot

CARD_RECENT = 10
CARD_SOURCES = (call_history, note_history, email_history)


@dataclass(frozen=True, slots=True)
class Work:
    """What one batch needs: ``calls`` by Linkedid; for some, the customer number to
    look up (``lookups``) or a known match (``matches``); the calls whose card must
    be built (``cards``) and those needing a call-back task (``callbacks``)."""

    calls: dict[str, CallSnapshot]
    lookups: dict[str, str]
    matches: dict[str, LookupResult | None]
    cards: Sequence[str]
    callbacks: Sequence[str]
    region: str
    suffix_digits: int


@dataclass(slots=True)
class Written:
    """Call ids, new lookups and cards by Linkedid, and the call-back tasks created."""

    ids: dict[str, int]
    matches: dict[str, LookupResult | None]
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)


def contact_ids(result: LookupResult | None) -> list[int]:
    """The ids of the contacts a lookup matched."""
    return [card.id for card in result.matches] if result is not None else []


def write(work: Work, conn: Connection) -> Written:
    """Look up, upsert, build cards and create call-back tasks; one transaction."""
    found = {
        lid: find_contacts(conn, number, work.region, work.suffix_digits) if number else None
        for lid, number in work.lookups.items()
    }
    matches = {**work.matches, **found}
    contacts = {lid: contact_ids(matches.get(lid)) for lid in work.calls}
    ids = record_calls(
        conn, [(call, contacts[lid]) for lid, call in work.calls.items()], work.region
    )
    written = Written(ids, found)
    if not work.cards and not work.callbacks:
        return written
    with Session(bind=conn) as session:
        for lid in work.cards:
            written.cards[lid] = card(session, work.calls[lid], matches.get(lid))
        for lid in work.callbacks:
            task = create_callback_task(session, ids[lid], work.calls[lid], contacts[lid])
            if task is not None:
                written.tasks.append(task_json(task))
    return written


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
