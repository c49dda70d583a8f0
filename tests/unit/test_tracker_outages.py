"""The tracker across an outage, sans I/O: conn1 fed, the channel list of conn2 at its
place, conn2's events after it. Times are the PBX's or unknown, never made up."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmcomms.ami.capture import CaptureBlock, load_capture
from crmcomms.ami.replay import RecordedConnection
from crmcomms.ami.translate import translate
from crmcomms.pbx_events import CoreShowChannel
from crmcomms.telephony.calls import CallEnded, CallEvent, CallRinging, CallSnapshot
from crmcomms.telephony.reconcile import merge
from crmcomms.telephony.tracker import CallTracker
from tests import ami_edge, calls

OUTAGES = Path(__file__).parents[1] / "fixtures" / "outages"


def truth(scenario: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OUTAGES / scenario / "truth.json").read_text())
    return loaded


def utc(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def channels(blocks: list[CaptureBlock]) -> list[CoreShowChannel]:
    listed = [translate(block.fields) for block in blocks]
    return [event for event in listed if isinstance(event, CoreShowChannel)]


def feed(tracker: CallTracker, blocks: list[CaptureBlock]) -> list[CallEvent]:
    return ami_edge.feed(tracker, [block.fields for block in blocks])


def connection(scenario: str, n: int) -> RecordedConnection:
    return RecordedConnection.of(load_capture(OUTAGES / scenario / f"conn{n}.ami"), drop=False)


def across(scenario: str, tracker: CallTracker | None = None) -> list[CallEvent]:
    """Feed both connections the way the daemon applies them."""
    tracker = tracker or CallTracker()
    events = []
    for n in (1, 2):
        conn = connection(scenario, n)
        events += feed(tracker, conn.before)
        pbx_now = datetime.fromtimestamp(conn.pbx_time, UTC) if conn.pbx_time else None
        events += tracker.resync(channels(conn.listing), pbx_now)
        events += feed(tracker, conn.after)
    return events


def ended(events: list[CallEvent]) -> dict[str, CallSnapshot]:
    return {e.call.linkedid: e.call for e in events if isinstance(e, CallEnded)}


def near(value: datetime | None, true: datetime | None, within: float = 1.0) -> bool:
    return value is not None and true is not None and abs((value - true).total_seconds()) <= within


def test_ended_during_outage_has_unknown_end_not_the_reconnect_time() -> None:
    scenario = "ended-during-outage"
    (fact,) = truth(scenario)["calls"]
    (call,) = ended(across(scenario)).values()
    assert call.status == "answered" and call.answered_by == "101"
    assert call.ended_at is None and call.talk_seconds is None and call.times_uncertain
    assert near(call.answered_at, utc(fact["times"]["agent_answered_utc"]), 0.05)
    assert call.hangup_cause == ""


def test_answered_during_outage_has_no_invented_answer_time() -> None:
    scenario = "answered-during-outage"
    (fact,) = truth(scenario)["calls"]
    (call,) = ended(across(scenario)).values()
    assert call.status == "answered" and call.answered_by == "102"
    assert list(call.agents_rung) == fact["agents_rung"]
    assert call.answered_at is None and call.times_uncertain
    assert call.ring_seconds is None and call.talk_seconds is None
    assert near(call.ended_at, utc(fact["times"]["call_end_utc"]), 0.05)


def test_long_call_across_outage_keeps_its_true_times() -> None:
    scenario = "long-call-across-outage"
    (fact,) = truth(scenario)["calls"]
    (call,) = ended(across(scenario)).values()
    assert call.status == "answered" and not call.times_uncertain
    assert near(call.answered_at, utc(fact["times"]["agent_answered_utc"]), 0.05)
    assert near(call.ended_at, utc(fact["times"]["call_end_utc"]), 0.05)
    assert call.talk_seconds == round(fact["times"]["talk_seconds"])


def test_restart_while_ringing_restored_call_ends_unknown() -> None:
    """A new run takes the logged ringing call over; not listed, it ends unseen."""
    scenario = "restart-while-ringing"
    first = CallTracker()
    conn1 = connection(scenario, 1)
    events = feed(first, conn1.before) + first.resync(channels(conn1.listing), None)
    events += feed(first, conn1.after)
    (ringing,) = first.active_calls()
    assert ringing.status == "ringing"
    second = CallTracker()
    second.restore([ringing])
    conn2 = connection(scenario, 2)
    pbx_now = datetime.fromtimestamp(conn2.pbx_time or 0, UTC)
    out = feed(second, conn2.before) + second.resync(channels(conn2.listing), pbx_now)
    (call,) = ended(out).values()
    assert call.status == "unknown" and call.ended_at is None and call.times_uncertain
    assert call.started_at == ringing.started_at and list(call.agents_rung) == ["101"]


def test_adopted_ringing_call_dates_its_ring_from_the_channel_age() -> None:
    """Joining while a call rings: start and ring start from ``Duration``, not now."""
    scenario = "answered-during-outage"
    conn1 = connection(scenario, 1)
    tracker = CallTracker()
    events = feed(tracker, conn1.before)
    assert not tracker.active_calls()
    # join during the ringing: list the channels the replay of conn1 knows
    from crmcomms.ami.replay_channels import ChannelTable

    table = ChannelTable()
    for block in conn1.after:
        table.apply(block.fields)
    last = max(float(b.fields["Timestamp"]) for b in conn1.after if "Timestamp" in b.fields)
    listed = [translate(item) for item in table.items("x")]
    events += tracker.resync([e for e in listed if isinstance(e, CoreShowChannel)], None)
    (call,) = tracker.active_calls()
    assert call.times_uncertain  # no PBX time: no start, no ring start
    assert any(isinstance(e, CallRinging) for e in events)
    later = datetime.fromtimestamp(last, UTC) + timedelta(seconds=1)
    assert call.ring_seconds is None and call.started_at <= later


@pytest.mark.parametrize(
    "scenario", ["ended-during-outage", "answered-during-outage", "long-call-across-outage"]
)
def test_no_call_stays_open_and_no_time_is_after_the_truth(scenario: str) -> None:
    tracker = CallTracker()
    calls = ended(across(scenario, tracker))
    assert not tracker.active_calls()
    for fact in truth(scenario)["calls"]:
        call = calls[fact["linkedid"]]
        true_end = utc(fact["times"]["call_end_utc"])
        assert call.ended_at is None or near(call.ended_at, true_end)


def snapshot(**changes: Any) -> CallSnapshot:
    """The call of the outage captures as the link saw it (answered, end unseen)."""
    fields: dict[str, Any] = {
        "linkedid": "1.1",
        "caller": "+49302000001",
        "callee": "5550101",
        "did": "5550101",
        "agents_rung": ("101",),
        "answered_by": "101",
        "started_at": datetime(2026, 12, 2, 2, 57, 31, tzinfo=UTC),
        "answered_at": datetime(2026, 12, 2, 2, 57, 33, 579000, tzinfo=UTC),
        "ring_seconds": 2,
        "talked": ("101",),
        "times_uncertain": True,
    }
    return calls.snapshot(**(fields | changes))


def test_merge_keeps_live_facts_and_fills_gaps_from_the_cdr() -> None:
    logged = snapshot()
    end = datetime(2026, 12, 2, 2, 57, 40, tzinfo=UTC)
    cdr = snapshot(
        answered_at=datetime(2026, 12, 2, 2, 57, 33, tzinfo=UTC), ended_at=end, backfilled=True
    )
    merged = merge(logged, cdr)
    assert merged is not None
    assert merged.answered_at == logged.answered_at  # the event's, to the millisecond
    assert merged.ended_at == end and merged.talk_seconds == 6
    assert merged.backfilled and not merged.times_uncertain


def test_merge_leaves_a_certain_final_call_alone() -> None:
    logged = snapshot(ended_at=datetime(2026, 12, 2, 2, 57, 40, tzinfo=UTC), times_uncertain=False)
    assert merge(logged, snapshot(status="missed", backfilled=True)) is None


def test_merge_takes_the_cdr_outcome_of_an_unknown_call() -> None:
    logged = snapshot(status="unknown", answered_by=None, answered_at=None, ring_seconds=None)
    end = datetime(2026, 12, 2, 2, 57, 36, tzinfo=UTC)
    cdr = snapshot(
        status="missed",
        answered_by=None,
        answered_at=None,
        ended_at=end,
        ring_seconds=5,
        talk_seconds=0,
        times_uncertain=False,
        backfilled=True,
    )
    merged = merge(logged, cdr)
    assert merged is not None and merged.status == "missed" and merged.ring_seconds == 5
    assert merged.talk_seconds == 0 and not merged.times_uncertain
