"""Call controls and queue presence: the AMI actions on the wire, byte for byte, against
Asterisk's documented actions; queue events typed; presence from a real capture.

Each expected block below is the "Syntax" of the action in Asterisk's AMI
documentation (docs.asterisk.org, Asterisk 20/22 "AMI Actions"), in the documented
header order, without the ActionID the client adds:

    Action: Hangup / Channel / Cause
    Action: BlindTransfer / Channel / Context / Exten
    Action: Atxfer / Channel / Exten / Context
    Action: CancelAtxfer / Channel
    Action: Redirect / Channel / ExtraChannel / Exten / ExtraExten / Context /
            ExtraContext / Priority / ExtraPriority
    Action: Bridge / Channel1 / Channel2 / Tone (no|Channel1|Channel2|Both)
    Action: QueuePause / Interface / Paused / Queue / Reason
    Action: QueueStatus / Queue / Member
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmcomms.ami.capture import load_capture
from crmcomms.ami.framing import encode_action
from crmcomms.ami.translate import translate, worth_parsing
from crmcomms.config import AmiSettings
from crmcomms.pbx_events import ChannelSnapshot, CoreShowChannel, QueueEntry, QueueMember
from crmcomms.telephony import controls
from crmcomms.telephony.presence import Presence, interface_matcher
from crmcomms.telephony.tracker import CallTracker
from tests.integration.telephony_harness import CAPTURES


def wire(*lines: str) -> bytes:
    return ("".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


def test_hangup_on_the_wire() -> None:
    assert encode_action(controls.hangup_action("PJSIP/102-00000004")) == wire(
        "Action: Hangup", "Channel: PJSIP/102-00000004", "Cause: 16"
    )


def test_blind_transfer_on_the_wire() -> None:
    action = controls.blind_transfer_action("PJSIP/102-00000004", "from-internal", "103")
    assert encode_action(action) == wire(
        "Action: BlindTransfer",
        "Channel: PJSIP/102-00000004",
        "Context: from-internal",
        "Exten: 103",
    )


def test_attended_transfer_and_cancel_on_the_wire() -> None:
    action = controls.atxfer_action("PJSIP/102-00000004", "from-internal", "103")
    assert encode_action(action) == wire(
        "Action: Atxfer", "Channel: PJSIP/102-00000004", "Exten: 103", "Context: from-internal"
    )
    assert encode_action(controls.cancel_atxfer_action("PJSIP/102-00000004")) == wire(
        "Action: CancelAtxfer", "Channel: PJSIP/102-00000004"
    )


def test_hold_and_resume_on_the_wire() -> None:
    held = controls.hold_action("PJSIP/carrier-00000003", "PJSIP/102-00000004", "crm-hold")
    assert encode_action(held) == wire(
        "Action: Redirect",
        "Channel: PJSIP/carrier-00000003",
        "ExtraChannel: PJSIP/102-00000004",
        "Exten: s",
        "ExtraExten: agent",
        "Context: crm-hold",
        "ExtraContext: crm-hold",
        "Priority: 1",
        "ExtraPriority: 1",
    )
    resumed = controls.resume_action("PJSIP/102-00000004", "PJSIP/carrier-00000003")
    assert encode_action(resumed) == wire(
        "Action: Bridge",
        "Channel1: PJSIP/102-00000004",
        "Channel2: PJSIP/carrier-00000003",
        "Tone: no",
    )


def test_queue_pause_and_status_on_the_wire() -> None:
    pause = controls.queue_pause_action("PJSIP/101", True, "support", "lunch")
    assert encode_action(pause) == wire(
        "Action: QueuePause",
        "Interface: PJSIP/101",
        "Paused: true",
        "Queue: support",
        "Reason: lunch",
    )
    assert encode_action(controls.queue_pause_action("PJSIP/101", False)) == wire(
        "Action: QueuePause", "Interface: PJSIP/101", "Paused: false"
    )
    assert encode_action(controls.queue_status_action()) == wire("Action: QueueStatus")


def test_pause_reason_is_one_header_value() -> None:
    assert controls.clean_reason("lunch\r\nAction: Hangup") == "lunch Action: Hangup"
    assert len(controls.clean_reason("x" * 500)) == 80


def member_event(name: str = "QueueMemberPause", **headers: str) -> dict[str, str]:
    return {
        "Event": name,
        "Timestamp": "1795758716.718312",
        "Queue": "support",
        "MemberName": "Alice Agent",
        "Interface": "PJSIP/101",
        "StateInterface": "PJSIP/101",
        "Membership": "dynamic",
        "LoginTime": "1795758467",
        "InCall": "0",
        "Status": "1",
        "Paused": "1",
        "PausedReason": "lunch",
        **headers,
    }


def test_queue_member_events_are_typed() -> None:
    event = translate(member_event())
    assert isinstance(event, QueueMember)
    assert (event.queue, event.interface, event.paused, event.paused_reason) == (
        "support",
        "PJSIP/101",
        True,
        "lunch",
    )
    assert event.login_time == datetime.fromtimestamp(1795758467, UTC)
    assert worth_parsing("Event: QueueMemberPause\nQueue: support\n")
    # the QueueStatus list item names the member Name/Location (app_queue.c)
    item = {"Event": "QueueMember", "Queue": "support", "Name": "Bob", "Location": "PJSIP/102"}
    listed = translate({**item, "Status": "5", "Paused": "0", "ActionID": "7"})
    assert isinstance(listed, QueueMember) and listed.interface == "PJSIP/102"
    removed = translate(member_event("QueueMemberRemoved"))
    assert isinstance(removed, QueueMember) and removed.removed
    entry = translate({"Event": "QueueEntry", "Queue": "support", "Uniqueid": "1.5", "Wait": "42"})
    assert isinstance(entry, QueueEntry) and entry.wait == timedelta(seconds=42)


def test_interfaces_name_extensions() -> None:
    extension_of = interface_matcher(("PJSIP/{ext}-", "SIP/{ext}-"))
    assert extension_of("PJSIP/101") == "101"
    assert extension_of("Local/102@from-queue/n") == "102"
    assert extension_of("PJSIP/carrier") is None


def test_presence_follows_a_real_queue_call() -> None:
    """The recorded ringall queue: both members known from QueueMemberStatus, 102 talks,
    the caller waits from QueueCallerJoin to QueueCallerLeave."""
    presence = Presence()
    tracker = CallTracker()
    seen = set()
    for block in load_capture(CAPTURES / "queue-ringall-102-answers.ami"):
        event = translate(block.fields)
        if event is not None:
            presence.feed(event)
        for call_event in tracker.feed(event) if event is not None else []:
            presence.feed_call(call_event)
        seen.add(presence.agent_state("102"))
        for queue in presence.queues_json():
            assert (queue["longest_waiting_since"] is not None) == (queue["waiting"] > 0)
    assert {"ringing", "talking", "idle"} <= seen
    assert presence.agent_state("101") == "idle"
    [queue] = presence.queues_json()
    assert queue["queue"] == "support" and queue["waiting"] == 0
    assert sorted(m["extension"] for m in queue["members"]) == ["101", "102"]
    assert presence.agent_state("103") == "offline"  # in no queue


def test_presence_pause_and_status_answer() -> None:
    presence = Presence()
    presence.feed(translate(member_event()))  # type: ignore[arg-type]
    assert presence.agent_state("101") == "paused"
    assert presence.agent_json("101")["queues"][0]["paused_reason"] == "lunch"
    presence.feed(translate(member_event(Paused="0", PausedReason="")))  # type: ignore[arg-type]
    assert presence.agent_state("101") == "idle"
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    items = [
        translate({"Event": "QueueParams", "Queue": "sales", "Calls": "1"}),
        translate({"Event": "QueueEntry", "Queue": "sales", "Uniqueid": "9.1", "Wait": "30"}),
        translate(member_event("QueueMember", Status="5", Paused="0")),
    ]
    presence.load_status([i for i in items if i is not None], now)
    by_queue = {q["queue"]: q for q in presence.queues_json()}
    assert by_queue["sales"]["waiting"] == 1
    assert by_queue["sales"]["longest_waiting_since"] == "2026-11-27T09:59:30Z"
    assert presence.agent_state("101") == "offline"  # device unavailable


@pytest.mark.parametrize("target", ["10 3", "103;x", "", "a" * 40])
def test_transfer_targets_are_checked(target: str) -> None:
    from core.errors import InvalidInput
    from crmcomms.config import AmiSettings

    ctl = controls.CallControls(None, AmiSettings(), lambda _: [], Presence())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ctl.transfer_target(target, queue=False)
    assert ctl.transfer_target("support", queue=True) == ("crm-queues", "support")


def _listed(name: str, linkedid: str, context: str, exten: str) -> CoreShowChannel:
    """One item of a CoreShowChannels answer."""
    snap = ChannelSnapshot(name, name, linkedid, 6, None, None, None, None, context, exten)
    return CoreShowChannel(None, "1", snap, None, "MusicOnHold", None)


def test_held_calls_come_from_the_pbxs_channel_list() -> None:
    """After a restart or a failover the channel list says which calls are held (the
    peer in the hold context at ``s``, the agent's channel at ``agent``); before it,
    nobody knows."""
    legs = {
        "1.1": [("PJSIP/carrier-01", None, None), ("PJSIP/102-02", "102", None)],
        "1.2": [("PJSIP/carrier-03", None, "b1"), ("PJSIP/103-04", "103", "b1")],
    }
    presence = Presence()
    desk = controls.CallControls(
        None,  # type: ignore[arg-type]  # sends nothing here
        AmiSettings(hold_context="crm-hold"),
        lambda lid: legs.get(lid, []),
        presence,
    )
    assert desk.held("1.1") is None and presence.agent_json("102")["held"] is None
    desk.load_channels(
        [
            _listed("PJSIP/carrier-01", "1.1", "crm-hold", "s"),
            _listed("PJSIP/102-02", "1.1", "crm-hold", "agent"),
            _listed("PJSIP/carrier-03", "1.2", "from-trunk", "4930999"),
            _listed("PJSIP/103-04", "1.2", "from-internal", "103"),
        ]
    )
    assert (desk.held("1.1"), desk.held("1.2")) == (True, False)
    assert presence.agent_json("102")["held"] == ["1.1"]
    assert presence.agent_json("103")["held"] == []
    legs["1.1"].pop()  # the agent's phone hung up while holding
    assert desk.held("1.1") is False and presence.agent_json("102")["held"] == []


def test_the_feed_publishes_what_a_full_recomputation_would() -> None:
    """Presence keeps indexes and a set of touched extensions so that a batch does not
    recompute every agent; after each step of a real queue call (and a pause, a held
    call, a member removed, a QueueStatus reload) the last view pushed to each agent
    and to supervisors equals the view computed from scratch."""
    from crmcomms.push import PushHub
    from crmcomms.telephony.presence_feed import PresenceFeed

    presence = Presence()
    feed = PresenceFeed(presence, PushHub())
    tracker = CallTracker()

    def check() -> None:
        feed.publish()
        for extension in presence.extensions() | {"101", "102"}:
            assert feed._agents.get(extension, presence.agent_json(extension)) == (
                presence.agent_json(extension)
            ), extension
        assert feed._queues == presence.queues_json()

    for block in load_capture(CAPTURES / "queue-ringall-102-answers.ami"):
        event = translate(block.fields)
        if event is None:
            continue
        feed.feed_event(event)
        feed.feed_calls(tracker.feed(event))
        check()
    feed.feed_event(translate(member_event()))  # type: ignore[arg-type]
    check()
    presence.set_held({"102": {"1.1"}})
    check()
    presence.set_held({})
    check()
    feed.feed_event(translate(member_event("QueueMemberRemoved")))  # type: ignore[arg-type]
    check()
    assert presence.members_of("101") == []
    item = translate(member_event("QueueMember", Status="5", Paused="0"))
    presence.load_status([item], None)  # type: ignore[list-item]
    check()
    assert feed._agents["101"]["state"] == "offline"
    assert feed._agents["102"]["queues"] == []  # not listed: gone
