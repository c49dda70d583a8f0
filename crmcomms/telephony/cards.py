"""What the pops of a batch read, in one hop (see :class:`core.dbthread.DbWorker`),
and the screen-pop card.

:func:`read_for_pops` is what the events of a batch wait for: the ids of new
calls (the logged one after a replay or a restart, else a reserved fresh one),
the contacts matching new numbers, and the cards of new pops. Nothing is
written, so a pop never waits for a commit or for other calls (the call log is
written behind, :mod:`crmcomms.telephony.call_log`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.calls import call_ids, reserve_call_ids
from core.history import call_source, note_history, pending_tasks, task_json, timeline
from core.lookup import LookupResult, find_contacts
from core.mail.queries import email_history
from core.phones import display_number
from core.wrapup import customer_number, link_kind
from crmcomms.telephony.calls import CallSnapshot

CARD_RECENT = 10


@dataclass(frozen=True, slots=True)
class PopReads:
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
class PopData:
    """What was read: ids, lookups and cards by Linkedid."""

    ids: dict[str, int]
    matches: dict[str, LookupResult | None]
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_for_pops(needs: PopReads, conn: Connection) -> PopData:
    """Read what ``needs`` asks for (one read transaction)."""
    ids = call_ids(conn, needs.new) if needs.new else {}
    missing = [lid for lid in needs.new if lid not in ids]
    if missing:
        ids.update(zip(missing, reserve_call_ids(conn, len(missing), needs.above), strict=True))
    found = {
        lid: find_contacts(conn, number, needs.region, needs.suffix_digits) if number else None
        for lid, number in needs.lookups.items()
    }
    prepared = PopData(ids, found)
    if needs.cards:
        matches = {**needs.matches, **found}
        with Session(bind=conn) as session:
            for lid, call in needs.cards.items():
                prepared.cards[lid] = card(session, call, matches.get(lid), needs.region)
    return prepared


def contact_ids(result: LookupResult | None) -> list[int]:
    """The contacts a call is linked to by itself: the one contact its number matches
    exactly. A match by the last digits or of several contacts the agent confirms
    (``core.wrapup.link_contact``)."""
    if result is None or len(result.matches) != 1 or result.match_kind != "exact":
        return []
    return [result.matches[0].id]


def card(
    session: Session, call: CallSnapshot, result: LookupResult | None, region: str
) -> dict[str, Any]:
    """The screen-pop card: the matched contacts with how they matched (``match``:
    exact, suffix, several or none; ``linked``: whether the call is filed with the
    contact by itself), the number as dialled and formatted, the matched contacts'
    last interactions and open tasks."""
    matches = result.matches if result is not None else ()
    ids = [match.id for match in matches]
    sources = (call_source(region), note_history, email_history)
    recent = timeline(session, ids, limit=CARD_RECENT, sources=sources)
    tasks = pending_tasks(session, ids) if ids else []
    number = customer_number(call) or call.caller
    return {
        "number": number,
        "number_display": display_number(number, region),
        "matches": [match.to_json(region) for match in matches],
        "match": link_kind(result, ids[0]) if ids else "none",
        "linked": contact_ids(result),
        "unknown": not ids,
        "recent": [item.to_json() for item in recent],
        "tasks": [task_json(task) for task in tasks],
    }
