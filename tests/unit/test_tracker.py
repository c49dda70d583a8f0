"""CallTracker fed by recorded AMI streams (and hand-written ones where none exist)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmcomms.ami.framing import AmiFramer, Malformed
from crmcomms.ami.translate import AmiTranslator, translate
from crmcomms.pbx_events import AmiEvent, CoreShowChannel
from crmcomms.telephony.calls import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRinging,
    CallRingStopped,
    CallSnapshot,
    CallTransferred,
    Transfer,
)
from crmcomms.telephony.tracker import CallTracker
from tests.ami_edge import feed
from tests.unit import tracker_sequences as hand

CAPTURES = Path(__file__).parent.parent / "fixtures" / "ami"
NAMES = sorted(p.stem for p in CAPTURES.glob("*.ami"))
AGENT = re.compile(r"PJSIP/(\d+)-")

KIND = {
    CallRinging: "ringing",
    CallAnswered: "answered",
    CallRingStopped: "ring_stopped",
    CallTransferred: "transferred",
    CallEnded: "ended",
}

# What each capture must produce, in order: (kind, agent).
SEQUENCES: dict[str, list[tuple[str, str | None]]] = {
    "inbound-direct-answered": [("ringing", "101"), ("answered", "101"), ("ended", None)],
    "inbound-direct-missed": [("ringing", "101"), ("ring_stopped", "101"), ("ended", None)],
    # 101's phone rejects the INVITE with 486 at once: it never rings, no pop.
    "inbound-direct-busy": [("ended", None)],
    "queue-ringall-102-answers": [
        ("ringing", "101"),
        ("ringing", "102"),
        ("answered", "102"),
        ("ring_stopped", "101"),
        ("ended", None),
    ],
    # The agent placing a call is told when the far end answers.
    "outbound-answered": [("answered", "101"), ("ended", None)],
    "internal-101-to-102": [
        ("ringing", "102"),
        ("answered", "102"),
        ("answered", "101"),
        ("ended", None),
    ],
    # The PBX rings 101 first; 101 is "answered" when 01715559876 answers.
    "click-to-dial": [("ringing", "101"), ("answered", "101"), ("ended", None)],
}


def messages(name: str, chunk: int = 61) -> list[dict[str, str] | Malformed]:
    """The capture's blocks, framed from small chunks as a socket delivers them."""
    data = (CAPTURES / f"{name}.ami").read_bytes()
    framer = AmiFramer()
    out: list[dict[str, str] | Malformed] = []
    for start in range(0, len(data), chunk):
        out += framer.feed(data[start : start + chunk])
    return out


def feed_all(tracker: CallTracker, msgs: list[Any]) -> list[CallEvent]:
    """The blocks through the AMI edge, their typed events into the tracker."""
    return feed(tracker, msgs)


def facts(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text())
    return loaded


def kinds(events: list[CallEvent]) -> list[tuple[str, str | None]]:
    return [(KIND[type(e)], getattr(e, "agent", None)) for e in events]


def ended(events: list[CallEvent]) -> list[CallSnapshot]:
    return [e.call for e in events if isinstance(e, CallEnded)]


def check_pop_contract(events: list[CallEvent]) -> None:
    """Per call and agent: ringing -> exactly one answered/ring_stopped; then ended, once."""
    open_pops: dict[str, set[str]] = defaultdict(set)
    finished: set[str] = set()
    for event in events:
        linkedid = event.call.linkedid
        assert linkedid not in finished, f"event after CallEnded: {event}"
        pops = open_pops[linkedid]
        if isinstance(event, CallRinging):
            assert event.agent not in pops, f"second pop while ringing: {event}"
            pops.add(event.agent)
        elif isinstance(event, CallRingStopped):
            assert event.agent in pops, f"ring stopped without a pop: {event}"
            pops.discard(event.agent)
        elif isinstance(event, CallAnswered):
            pops.discard(event.agent)
        elif isinstance(event, CallEnded):
            assert not pops, f"call ended with open pops {pops}"
            assert event.call.status in {"answered", "missed", "busy", "failed", "abandoned"}
            finished.add(linkedid)


def expected_status(fact: dict[str, Any]) -> str:
    if fact.get("busy"):
        return "busy"
    return "missed" if fact.get("missed") else "answered"


def expected_cause(fact: dict[str, Any]) -> str:
    """Cause-txt of the customer's channel; the caller's channel on internal calls."""
    hangups: dict[str, str] = {h["Channel"]: h["Cause-txt"] for h in fact["observed"]["hangups"]}
    customer = [ch for ch in hangups if not AGENT.match(ch)]
    return hangups[customer[0] if customer else fact["observed"]["channels"][0]["Channel"]]


def test_every_capture_has_an_expected_sequence() -> None:
    assert set(NAMES) == set(SEQUENCES)


@pytest.mark.parametrize("name", NAMES)
def test_capture_facts(name: str) -> None:
    fact = facts(name)
    tracker = CallTracker()

    events = feed_all(tracker, messages(name))

    [call] = ended(events)
    assert call.linkedid == fact["linkedid"]
    assert call.direction == fact["direction"]
    assert call.caller == fact.get("caller_number", fact.get("agent"))
    assert call.callee == fact["dialed_number"]
    assert call.did == (fact["dialed_number"] if call.direction == "inbound" else "")
    assert call.queue == fact.get("queue", "")
    assert set(call.agents_rung) == set(fact["agents_rung"])
    answered_by = fact["answered_by"]
    assert call.answered_by == (None if answered_by in (None, "external party") else answered_by)
    assert call.status == expected_status(fact)
    assert call.hangup_cause == expected_cause(fact)
    if fact["recorded"]:
        assert call.recording is not None
        assert Path(call.recording).name == fact["recording_filename"]
        assert call.recording in fact["observed"]["mixmonitor_filenames"]
    else:
        assert call.recording is None
    assert "caller_name_after_dialplan" not in fact or (
        call.caller_name == fact["caller_name_after_dialplan"]
    )
    ring = fact.get("ring_seconds", fact.get("ring_seconds_agent", 0))
    ring += fact.get("ring_seconds_external", 0)
    assert abs(call.ring_seconds - ring) <= 1.5
    assert abs(call.talk_seconds - fact["talk_seconds"]) <= 1.5
    assert call.started_at.tzinfo is UTC
    assert call.ended_at is not None and call.started_at <= call.ended_at
    assert (call.answered_at is not None) == (call.status == "answered")
    assert kinds(events) == SEQUENCES[name]
    check_pop_contract(events)
    assert tracker.active_calls() == []


def test_queue_call_details() -> None:
    [call] = ended(feed_all(CallTracker(), messages("queue-ringall-102-answers")))

    assert call.caller_name == "Support: 004940123456"  # as presented to the agents
    assert call.agents_rung == ("101", "102")
    assert call.talked == ("102",)
    assert call.transfers == ()


def test_outbound_and_click_to_dial_details() -> None:
    [outbound] = ended(feed_all(CallTracker(), messages("outbound-answered")))
    [c2d] = ended(feed_all(CallTracker(), messages("click-to-dial")))

    assert (outbound.caller_name, outbound.talked) == ("Alice Agent", ("101",))
    assert (c2d.caller, c2d.caller_name, c2d.talked) == ("101", "Alice Agent", ("101",))


def test_snapshots_in_progress() -> None:
    events = feed_all(CallTracker(), messages("queue-ringall-102-answers"))

    ringing = events[0].call
    answered = events[2].call
    assert (ringing.status, ringing.answered_at, ringing.ended_at) == ("ringing", None, None)
    assert ringing.hangup_cause == ""
    assert ringing.recording is not None  # MixMonitor started before the queue
    assert answered.status == "talking"
    assert answered.answered_by == "102"


def test_active_calls_while_ringing() -> None:
    tracker = CallTracker()
    msgs = messages("inbound-direct-missed")
    first_ring = next(
        i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("ChannelState") == "5"
    )

    feed_all(tracker, msgs[: first_ring + 1])

    [call] = tracker.active_calls()
    assert (call.status, call.caller, call.agents_rung) == ("ringing", "01715550123", ("101",))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_chunking_does_not_matter(chunk: int) -> None:
    reference = kinds(feed_all(CallTracker(), messages("queue-ringall-102-answers")))

    assert kinds(feed_all(CallTracker(), messages("queue-ringall-102-answers", chunk))) == reference


@pytest.mark.parametrize("name", NAMES)
def test_same_stream_twice_gives_the_same_call_again(name: str) -> None:
    tracker = CallTracker()

    first = ended(feed_all(tracker, messages(name)))
    second = ended(feed_all(tracker, messages(name)))

    assert len(first) == len(second) == 1
    assert first == second
    assert tracker.active_calls() == []


def test_all_captures_in_one_stream() -> None:
    tracker = CallTracker()
    events: list[CallEvent] = []
    for name in NAMES:
        events += feed_all(tracker, messages(name))

    assert sorted(c.linkedid for c in ended(events)) == sorted(facts(n)["linkedid"] for n in NAMES)
    check_pop_contract(events)
    assert tracker.channels_tracked == 0


@pytest.mark.parametrize("name", NAMES)
def test_joining_half_way_never_breaks(name: str) -> None:
    """cacofonisk's test: drop the first k events, for every k, feed the rest."""
    msgs = messages(name)
    for k in range(len(msgs) + 1):
        tracker = CallTracker()
        events = feed_all(tracker, msgs[k:])
        counts = Counter(c.linkedid for c in ended(events))
        assert all(n == 1 for n in counts.values()), (k, counts)
        check_pop_contract(events)


def test_garbage_is_counted_and_skipped() -> None:
    """A block the framer cannot parse is the client's to count; events lacking a header
    the tracker needs, or of no use, are counted at the edge and never reach the tracker."""
    garbage = AmiFramer().feed(b"Asterisk Call Manager/11.0.0\r\nthis is not a header\r\n\r\n")
    assert [type(block) for block in garbage] == [Malformed]
    bad: list[dict[str, str]] = [
        {"Event": "Newchannel"},
        {"Event": "Hangup", "Channel": "PJSIP/101-00000001", "Uniqueid": "1.1"},
        {"Event": "DialEnd", "DestChannel": "PJSIP/101-00000001"},
        {
            "Event": "Newstate",
            "Timestamp": "soon",
            "Channel": "x",
            "Uniqueid": "1",
            "Linkedid": "1",
        },
        {"Event": "CEL", "EventName": "HANGUP"},
    ]
    capture = [m for m in messages("inbound-direct-answered") if isinstance(m, dict)]
    typed: list[AmiEvent] = []
    edge = AmiTranslator(typed.append)
    for block in bad:
        edge(block)
    assert typed == []
    for block in capture:
        edge(block)
    tracker = CallTracker()
    events = [call_event for event in typed for call_event in tracker.feed(event)]

    # 4 of the bad events, and 1 + 76 blocks no one reads (the capture's 2
    # QueueMemberStatus events are translated: queue presence reads them)
    assert (edge.stats.malformed, edge.stats.unknown) == (4, 1 + 76)
    assert len(typed) == len(capture) - 76
    assert len(ended(events)) == 1


def test_agent_patterns_need_the_placeholder() -> None:
    with pytest.raises(ValueError, match="ext"):
        CallTracker(agent_patterns=("PJSIP/",))


def test_other_agent_naming() -> None:
    """With agents named only by SIP/..., the PJSIP phones count as customers."""
    [call] = ended(feed_all(CallTracker(("SIP/{ext}-",)), messages("internal-101-to-102")))

    assert call.direction == "inbound"
    assert call.agents_rung == ()


# ---------------------------------------------------------------- resync


def core_show_channels(name: str, upto: int) -> list[CoreShowChannel]:
    """The channels alive after the first ``upto`` blocks of a capture, as listed by
    CoreShowChannels (built from the capture's own events)."""
    alive: dict[str, dict[str, str]] = {}
    bridges: dict[str, str] = {}
    for msg in messages(name)[:upto]:
        if not isinstance(msg, dict) or "Uniqueid" not in msg:
            continue
        uid = msg["Uniqueid"]
        if msg.get("Event") == "Hangup":
            alive.pop(uid, None)
        elif msg.get("Event") in ("Newchannel", "Newstate") or uid in alive:
            alive[uid] = msg
        if msg.get("Event") == "BridgeEnter":
            bridges[uid] = msg["BridgeUniqueid"]
        elif msg.get("Event") == "BridgeLeave":
            bridges.pop(uid, None)
    items = []
    for uid, msg in alive.items():
        item = {k: v for k, v in msg.items() if k not in ("Event", "Timestamp")}
        item |= {"Event": "CoreShowChannel", "BridgeId": bridges.get(uid, ""), "Duration": "0:0:3"}
        event = translate(item)
        assert isinstance(event, CoreShowChannel)
        items.append(event)
    return items


def index_of(name: str, event: str, **match: str) -> int:
    return next(
        i
        for i, m in enumerate(messages(name))
        if isinstance(m, dict)
        and m.get("Event") == event
        and all(m.get(k) == v for k, v in match.items())
    )


NOW = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def test_resync_ends_calls_whose_channels_vanished() -> None:
    name = "queue-ringall-102-answers"
    upto = index_of(name, "BridgeEnter", Channel="PJSIP/carrier-00000020") + 1
    tracker = CallTracker()
    feed_all(tracker, messages(name)[:upto])

    assert tracker.resync(core_show_channels(name, upto), NOW) == []
    events = tracker.resync([], NOW)

    [call] = ended(events)
    assert (call.status, call.answered_by, call.ended_at) == ("answered", "102", None)
    assert call.times_uncertain and call.talk_seconds is None  # the end was not seen
    assert tracker.active_calls() == []


def test_resync_of_a_ringing_call_that_vanished_has_an_unknown_outcome() -> None:
    """It may have been answered while the link was down: only the CDR can tell."""
    name = "inbound-direct-missed"
    tracker = CallTracker()
    feed_all(tracker, messages(name)[: index_of(name, "DialState") + 1])

    events = tracker.resync([], NOW)

    assert kinds(events) == [("ring_stopped", "101"), ("ended", None)]
    [call] = ended(events)
    assert (call.status, call.ended_at, call.ring_seconds) == ("unknown", None, None)


def test_resync_adopts_unknown_channels_and_their_hangup_ends_the_call_once() -> None:
    name = "queue-ringall-102-answers"
    upto = index_of(name, "BridgeEnter", Channel="PJSIP/carrier-00000020") + 1
    tracker = CallTracker()

    adopted = tracker.resync(core_show_channels(name, upto), NOW)
    events = feed_all(tracker, messages(name)[upto:])

    assert kinds(adopted) == [("answered", "102")]
    [call] = ended(events)
    assert call.linkedid == "1795758716.34"
    assert (call.direction, call.status, call.answered_by) == ("inbound", "answered", "102")
    assert call.caller == "004940123456"
    assert call.started_at == NOW - timedelta(seconds=3)


def test_resync_adopts_a_ringing_agent_with_a_pop() -> None:
    name = "inbound-direct-missed"
    upto = index_of(name, "DialState") + 1
    tracker = CallTracker()

    adopted = tracker.resync(core_show_channels(name, upto), NOW)
    events = feed_all(tracker, messages(name)[upto:])

    assert kinds(adopted) == [("ringing", "101")]
    assert kinds(events) == [("ring_stopped", "101"), ("ended", None)]
    assert ended(events)[0].status == "missed"


# ---------------------------------------------------------------- hand-written sequences
# NOT RECORDED: tests/unit/tracker_sequences.py writes these streams by hand from the
# Asterisk AMI event documentation (see its docstring).


def run(pbx: hand.Pbx) -> tuple[CallTracker, list[CallEvent]]:
    tracker = CallTracker()
    events = feed_all(tracker, pbx.messages)
    check_pop_contract(events)
    assert tracker.active_calls() == []
    assert tracker.channels_tracked == 0
    return tracker, events


def test_hand_ringall_nobody_answers_is_one_missed_call() -> None:
    agents = ("101", "102", "103", "104", "105")
    _, events = run(hand.ringall_nobody_answers(agents))

    [call] = ended(events)
    assert (call.status, call.queue, call.answered_by) == ("missed", "support", None)
    assert call.agents_rung == agents
    assert call.ring_seconds == 30  # first ring to the end, both rounds
    per_agent = defaultdict(list)
    for kind, agent in kinds(events):
        per_agent[agent].append(kind)
    for agent in agents:
        assert per_agent[agent] == ["ringing", "ring_stopped", "ringing", "ring_stopped"]


def test_hand_queue_caller_abandons() -> None:
    _, events = run(hand.queue_caller_abandons())

    [call] = ended(events)
    assert (call.status, call.queue, call.talk_seconds) == ("abandoned", "support", 0)
    assert kinds(events)[-1] == ("ended", None)
    assert sorted(kinds(events)[:-1]) == sorted(
        [(k, a) for a in ("101", "102", "103") for k in ("ringing", "ring_stopped")]
    )


def test_hand_rrmemory_agents_rung_one_after_another() -> None:
    _, events = run(hand.rrmemory_second_agent_answers())

    assert kinds(events) == [
        ("ringing", "101"),
        ("ring_stopped", "101"),
        ("ringing", "102"),
        ("answered", "102"),
        ("ended", None),
    ]
    call = ended(events)[0]
    assert (call.status, call.answered_by, call.talked) == ("answered", "102", ("102",))
    assert call.agents_rung == ("101", "102")
    assert (call.ring_seconds, call.talk_seconds) == (21, 10)


def test_hand_two_phones_on_one_extension_pop_once() -> None:
    _, answered = run(hand.two_phones_one_extension(answer=True))
    _, missed = run(hand.two_phones_one_extension(answer=False))

    assert kinds(answered) == [("ringing", "101"), ("answered", "101"), ("ended", None)]
    # the pop goes only when the last of the two phones stops ringing
    assert kinds(missed) == [("ringing", "101"), ("ring_stopped", "101"), ("ended", None)]
    assert ended(missed)[0].status == "missed"


def test_hand_blind_transfer_stays_one_call() -> None:
    _, events = run(hand.blind_transfer())

    assert kinds(events) == [
        ("ringing", "101"),
        ("answered", "101"),
        ("transferred", None),
        ("ringing", "102"),
        ("answered", "102"),
        ("ended", None),
    ]
    [call] = ended(events)
    assert call.answered_by == "101"
    assert call.talked == ("101", "102")
    assert call.transfers == (Transfer("101", "102", "blind"),)
    assert call.agents_rung == ("101", "102")
    assert (call.status, call.ring_seconds, call.talk_seconds) == ("answered", 2, 13)


def test_hand_attended_transfer_through_local_channels() -> None:
    _, events = run(hand.attended_transfer_local())

    assert kinds(events) == [
        ("ringing", "101"),
        ("answered", "101"),
        ("ringing", "103"),
        ("answered", "103"),
        ("transferred", None),
        ("ended", None),
    ]
    [call] = ended(events)
    assert (call.answered_by, call.talked) == ("101", ("101", "103"))
    assert call.transfers == (Transfer("101", "103", "attended"),)
    assert call.hangup_cause == "Normal Clearing"


def test_hand_attended_transfer_merges_the_second_linkedid() -> None:
    pbx, first, second = hand.attended_transfer_two_calls()
    _, events = run(pbx)

    calls = {call.linkedid: call for call in ended(events)}
    assert set(calls) == {first, second}
    customer, consult = calls[first], calls[second]
    assert (customer.direction, customer.caller) == ("inbound", "+4930123123")
    assert (customer.answered_by, customer.talked) == ("101", ("101", "103"))
    assert customer.transfers == (Transfer("101", "103", "attended"),)
    assert customer.talk_seconds == 17
    # the consultation itself was an internal call 101 -> 103
    assert (consult.direction, consult.caller, consult.callee) == ("internal", "101", "103")
    assert (consult.status, consult.answered_by) == ("answered", "103")
    assert [e.call.linkedid for e in events if isinstance(e, CallEnded)] == [second, first]


def test_hand_click_to_dial_the_agent_does_not_answer() -> None:
    _, events = run(hand.click_to_dial_agent_does_not_answer())

    assert kinds(events) == [("ringing", "101"), ("ring_stopped", "101"), ("ended", None)]
    [call] = ended(events)
    assert (call.direction, call.caller, call.callee) == ("outbound", "101", "01715559876")
    assert (call.status, call.ring_seconds, call.talk_seconds) == ("failed", 30, 0)


@pytest.mark.parametrize(("dial_status", "status"), [("NOANSWER", "failed"), ("BUSY", "busy")])
def test_hand_outbound_not_answered(dial_status: str, status: str) -> None:
    _, events = run(hand.outbound_not_answered(dial_status))

    assert kinds(events) == [("ended", None)]
    [call] = ended(events)
    assert (call.direction, call.callee, call.status) == ("outbound", "004930999888", status)
    assert call.agents_rung == ()
    assert call.hangup_cause == ("User busy" if dial_status == "BUSY" else "Normal Clearing")


@pytest.mark.parametrize(
    "scenario",
    [
        hand.ringall_nobody_answers,
        hand.queue_caller_abandons,
        hand.rrmemory_second_agent_answers,
        hand.two_phones_one_extension,
        hand.blind_transfer,
        hand.attended_transfer_local,
        lambda: hand.attended_transfer_two_calls()[0],
        hand.click_to_dial_agent_does_not_answer,
        hand.outbound_not_answered,
    ],
)
def test_hand_sequences_joined_half_way(scenario: Any) -> None:
    msgs = scenario().messages
    for k in range(len(msgs) + 1):
        events = feed_all(CallTracker(), msgs[k:])
        assert all(n == 1 for n in Counter(c.linkedid for c in ended(events)).values())
        check_pop_contract(events)
