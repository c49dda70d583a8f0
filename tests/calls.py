"""The one factory of call snapshots for tests: a plain inbound call, changed by keyword."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from crmcomms.telephony.calls import CallSnapshot

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
"""When the factory's calls start, unless told otherwise."""

_PLAIN = CallSnapshot(
    linkedid="1700000000.1",
    direction="inbound",
    status="answered",
    caller="0301234567",
    caller_name="",
    callee="4930999",
    did="4930999",
    queue="",
    agents_rung=(),
    answered_by=None,
    started_at=T0,
    answered_at=None,
    ended_at=None,
    ring_seconds=None,
    talk_seconds=None,
    hangup_cause="",
    recording=None,
    transfers=(),
    talked=(),
)


def snapshot(**changes: Any) -> CallSnapshot:
    """An inbound call from 0301234567 to 4930999 at :data:`T0`, nobody rung, no times,
    with ``changes`` applied (any field of :class:`CallSnapshot`)."""
    return replace(_PLAIN, **changes)
