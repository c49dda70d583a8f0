"""What the call log holds, read back as call snapshots for reconciliation.

Synchronous functions of a :class:`~sqlalchemy.Connection`, for one hop on the
database worker (:class:`core.dbthread.DbWorker`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, func, select

from core.models import Call
from crmcomms.telephony.calls import CallSnapshot, CallStatus, Direction, Transfer

OPEN_STATUSES = ("ringing", "talking")
_CALLS: Table = Call.__table__  # type: ignore[assignment]


def open_calls(conn: Connection) -> list[CallSnapshot]:
    """The calls the log holds as ringing or talking (a previous run's, at start-up)."""
    rows = conn.execute(select(_CALLS).where(Call.status.in_(OPEN_STATUSES)))
    return [snapshot_of(row) for row in rows]


def logged_calls(linkedids: Sequence[str], conn: Connection) -> dict[str, CallSnapshot]:
    """The logged calls among ``linkedids``, as snapshots."""
    if not linkedids:
        return {}
    rows = conn.execute(select(_CALLS).where(Call.linkedid.in_(list(linkedids))))
    return {row.linkedid: snapshot_of(row) for row in rows}


def last_activity(conn: Connection) -> datetime | None:
    """The latest start or end the log holds (where a backfill after a restart begins)."""
    start, end = conn.execute(select(func.max(Call.started_at), func.max(Call.ended_at))).one()
    known = [t for t in (start, end) if t is not None]
    return max(known) if known else None


def snapshot_of(row: Row[Any]) -> CallSnapshot:
    """A logged call as the tracker's snapshot (who talked is not logged)."""
    direction: Direction = row.direction
    status: CallStatus = row.status
    return CallSnapshot(
        linkedid=row.linkedid,
        direction=direction,
        status=status,
        caller=row.caller,
        caller_name=row.caller_name,
        callee=row.callee,
        did=row.did,
        queue=row.queue,
        agents_rung=tuple(row.agents_rung),
        answered_by=row.answered_by,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        ring_seconds=row.ring_seconds,
        talk_seconds=row.talk_seconds,
        hangup_cause=row.hangup_cause,
        recording=row.recording_path,
        transfers=tuple(
            Transfer(t.get("from", ""), t.get("to", ""), t.get("kind", "blind"))
            for t in row.transfers
        ),
        talked=(),
        times_uncertain=bool(row.times_uncertain),
        backfilled=bool(row.backfilled),
    )
