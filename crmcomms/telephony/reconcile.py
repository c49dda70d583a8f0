"""Reconciliation of the call log with what the PBX says after a gap in the AMI stream.

Three sources, in order of trust: live events (exact times), the channel list
after a login (alive or not, age to the second) and Asterisk's CDR (whole
calls, times to the second, written at hangup). :func:`merge` combines what the
log holds of a call with what the CDR says of it: what was seen live wins,
the CDR fills in what was not known, and nothing is made up from our clock.
Pure: :mod:`crmcomms.telephony.logged` reads the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from crmcomms.telephony.call_state import seconds
from crmcomms.telephony.calls import CallSnapshot

#: Statuses that are still open to what the CDR says.
_UNSETTLED = frozenset({"ringing", "talking", "unknown"})


def merge(logged: CallSnapshot | None, cdr: CallSnapshot) -> CallSnapshot | None:
    """The call as known from the log and the CDR; None if the log is right already.

    A call the log does not have is the CDR's. A call logged final with certain
    times needs nothing. Otherwise the log's facts stay, the CDR fills the gaps.
    """
    if logged is None:
        return cdr
    if logged.status not in _UNSETTLED and not logged.times_uncertain:
        return None
    status = cdr.status if logged.status in _UNSETTLED else logged.status
    answered_at = logged.answered_at or cdr.answered_at
    ended_at = logged.ended_at or cdr.ended_at
    answered = status == "answered"
    talk = _talk(answered, answered_at, ended_at)
    ring = logged.ring_seconds if logged.ring_seconds is not None else cdr.ring_seconds
    if not answered and ring is None:
        ring = cdr.ring_seconds
    merged = replace(
        logged,
        status=status,
        caller=logged.caller or cdr.caller,
        caller_name=logged.caller_name or cdr.caller_name,
        callee=logged.callee or cdr.callee,
        did=logged.did or cdr.did,
        queue=logged.queue or cdr.queue,
        agents_rung=_union(logged.agents_rung, cdr.agents_rung),
        answered_by=logged.answered_by or cdr.answered_by,
        answered_at=answered_at,
        ended_at=ended_at,
        ring_seconds=ring,
        talk_seconds=talk,
        transfers=logged.transfers or cdr.transfers,
        talked=_union(logged.talked, cdr.talked),
        times_uncertain=ended_at is None or ring is None or (answered and talk is None),
        backfilled=True,
    )
    # the same CDR read again (overlapping windows, a restart): nothing new
    return None if replace(merged, talked=logged.talked) == logged else merged


def _talk(answered: bool, start: datetime | None, end: datetime | None) -> int | None:
    if not answered:
        return 0
    if start is None or end is None:
        return None
    return seconds(start, end)


def _union(first: Sequence[str], second: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))
