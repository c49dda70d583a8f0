"""translate(): recorded AMI blocks -> typed events; the only place knowing AMI spellings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crmcomms.ami.framing import AmiFramer
from crmcomms.ami.translate import MalformedEvent, translate, worth_parsing
from crmcomms.pbx_events import (
    AgentCalled,
    AttendedTransfer,
    BlindTransfer,
    CoreShowChannel,
    DialBegin,
    DialEnd,
    FullyBooted,
    Hangup,
    NewCallerid,
    Newchannel,
    OriginateResponse,
    QueueCallerJoin,
    VarSet,
)

CAPTURES = Path(__file__).parent.parent / "fixtures" / "ami"


def blocks(name: str) -> list[dict[str, str]]:
    framed = AmiFramer().feed((CAPTURES / f"{name}.ami").read_bytes())
    return [block for block in framed if isinstance(block, dict)]


def first(name: str, event: str, **match: str) -> dict[str, str]:
    return next(
        b
        for b in blocks(name)
        if b.get("Event") == event and all(b.get(k) == v for k, v in match.items())
    )


def test_newchannel_of_the_queue_capture() -> None:
    event = translate(first("queue-ringall-102-answers", "Newchannel"))

    assert isinstance(event, Newchannel)
    assert event.timestamp == datetime(2026, 11, 27, 5, 51, 56, 209829, tzinfo=UTC)
    channel = event.channel
    assert channel.name == "PJSIP/carrier-00000020"
    assert channel.uniqueid == channel.linkedid == "1795758716.34"
    assert channel.state == 4
    assert (channel.caller_num, channel.caller_name) == ("004940123456", "Hansen Logistik")
    assert channel.connected_num is None  # '<unknown>' on the wire
    assert channel.connected_name is None
    assert (channel.context, channel.exten) == ("from-trunk", "5550100")


def test_new_callerid_carries_the_name_set_by_the_dialplan() -> None:
    event = translate(first("queue-ringall-102-answers", "NewCallerid"))

    assert isinstance(event, NewCallerid)
    assert event.channel.caller_name == "Support: 004940123456"


def test_dial_events_carry_both_channels() -> None:
    begin = translate(first("queue-ringall-102-answers", "DialBegin"))
    end = translate(first("queue-ringall-102-answers", "DialEnd", DialStatus="CANCEL"))

    assert isinstance(begin, DialBegin)
    assert begin.caller is not None and begin.caller.name == "PJSIP/carrier-00000020"
    assert begin.dest.name == "PJSIP/101-00000021"
    assert begin.dest.uniqueid == "1795758716.35"
    assert begin.dest.linkedid == "1795758716.34"
    assert begin.dial_string == "PJSIP/101"
    assert isinstance(end, DialEnd)
    assert (end.dest.name, end.status) == ("PJSIP/101-00000021", "CANCEL")


def test_originate_dial_begin_has_no_caller_channel() -> None:
    begin = translate(first("click-to-dial", "DialBegin"))

    assert isinstance(begin, DialBegin)
    assert begin.caller is None
    assert begin.dest.name == "PJSIP/101-00000029"
    assert begin.dest.caller_num == "01715559876"


def test_originate_response() -> None:
    event = translate(first("click-to-dial", "OriginateResponse"))

    assert isinstance(event, OriginateResponse)
    assert (event.action_id, event.response) == ("crm-c2d-0001", "Success")
    assert (event.uniqueid, event.exten) == ("1795758764.43", "01715559876")


def test_hangup_cause() -> None:
    event = translate(first("inbound-direct-busy", "Hangup"))

    assert isinstance(event, Hangup)
    assert (event.cause, event.cause_text) == (17, "User busy")


def test_queue_events() -> None:
    join = translate(first("queue-ringall-102-answers", "QueueCallerJoin"))
    called = translate(first("queue-ringall-102-answers", "AgentCalled"))

    assert isinstance(join, QueueCallerJoin)
    assert join.queue == "support"
    assert isinstance(called, AgentCalled)
    assert (called.dest.name, called.interface) == ("PJSIP/101-00000021", "PJSIP/101")


def test_tracked_variables_only() -> None:
    recording = translate(
        first("queue-ringall-102-answers", "VarSet", Variable="MIXMONITOR_FILENAME")
    )
    did = translate(first("queue-ringall-102-answers", "VarSet", Variable="__INBOUND_DID"))
    other = translate(first("queue-ringall-102-answers", "VarSet", Variable="BRIDGEPEER"))

    assert isinstance(recording, VarSet)
    assert recording.value == "/var/spool/asterisk/monitor/1795758716.34.wav"
    assert isinstance(did, VarSet) and did.value == "5550100"
    assert other is None


def test_fully_booted_has_no_timestamp() -> None:
    event = translate(first("inbound-direct-answered", "FullyBooted"))

    assert event == FullyBooted(timestamp=None)


@pytest.mark.parametrize("name", sorted(p.stem for p in CAPTURES.glob("*.ami")))
def test_every_recorded_block_translates(name: str) -> None:
    used = [translate(block) for block in blocks(name)]

    assert any(isinstance(event, Newchannel) for event in used)
    assert all(event is None or event.timestamp is None or event.timestamp.tzinfo for event in used)


@pytest.mark.parametrize(
    "msg",
    [
        {"Event": "CEL", "EventName": "CHAN_START"},
        {"Event": "DeviceStateChange", "Device": "PJSIP/101", "State": "INUSE"},
        {"Event": "SomethingNew", "Channel": "PJSIP/101-00000001"},
        {"Response": "Success", "Message": "Authentication accepted"},
        {},
    ],
)
def test_unknown_or_unused_messages_give_none(msg: dict[str, str]) -> None:
    assert translate(msg) is None


def newchannel(**changes: str) -> dict[str, str]:
    msg = dict(first("queue-ringall-102-answers", "Newchannel"))
    msg.update(changes)
    return msg


@pytest.mark.parametrize("header", ["Channel", "Uniqueid", "Linkedid"])
def test_missing_required_header_raises(header: str) -> None:
    msg = newchannel()
    del msg[header]

    with pytest.raises(MalformedEvent) as caught:
        translate(msg)

    assert (caught.value.event_name, caught.value.header) == ("Newchannel", header)


def test_empty_required_header_is_missing() -> None:
    with pytest.raises(MalformedEvent) as caught:
        translate(newchannel(Uniqueid=""))

    assert caught.value.header == "Uniqueid"


def test_missing_dial_status_and_bad_timestamp_raise() -> None:
    dial_end = dict(first("queue-ringall-102-answers", "DialEnd"))
    del dial_end["DialStatus"]

    with pytest.raises(MalformedEvent, match="DialStatus"):
        translate(dial_end)
    with pytest.raises(MalformedEvent, match="Timestamp"):
        translate(newchannel(Timestamp="yesterday"))


@pytest.mark.parametrize("blank", ["", "<unknown>"])
def test_blank_caller_id_becomes_none(blank: str) -> None:
    event = translate(newchannel(CallerIDNum=blank, CallerIDName=blank, Exten=blank))

    assert isinstance(event, Newchannel)
    assert event.channel.caller_num is None
    assert event.channel.caller_name is None
    assert event.channel.exten is None


def test_core_show_channel() -> None:
    msg = {
        "Event": "CoreShowChannel",
        "ActionID": "resync-1",
        "Channel": "PJSIP/102-00000022",
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": "102",
        "CallerIDName": "Bob Agent",
        "ConnectedLineNum": "004940123456",
        "ConnectedLineName": "Support: 004940123456",
        "Context": "from-agents",
        "Exten": "5550100",
        "Uniqueid": "1795758716.36",
        "Linkedid": "1795758716.34",
        "BridgeId": "",
        "Application": "AppQueue",
        "ApplicationData": "(Outgoing Line)",
        "Duration": "00:01:05",
    }

    event = translate(msg)

    assert isinstance(event, CoreShowChannel)
    assert event.timestamp is None
    assert event.bridge_id is None
    assert event.duration == timedelta(seconds=65)
    assert (event.channel.state, event.channel.linkedid) == (6, "1795758716.34")


def snapshot_headers(prefix: str, name: str, uid: str, linkedid: str) -> dict[str, str]:
    return {
        f"{prefix}Channel": name,
        f"{prefix}ChannelState": "6",
        f"{prefix}CallerIDNum": name.split("/")[1].split("-")[0],
        f"{prefix}Uniqueid": uid,
        f"{prefix}Linkedid": linkedid,
    }


def test_transfer_events_follow_the_documented_prefixes() -> None:
    # Shapes from the Asterisk 22 AMI documentation (not recorded).
    blind = {
        "Event": "BlindTransfer",
        "Timestamp": "1800000000.000100",
        "Result": "Success",
        **snapshot_headers("Transferer", "PJSIP/101-00000001", "1.2", "1.1"),
        **snapshot_headers("Transferee", "PJSIP/carrier-00000000", "1.1", "1.1"),
        "IsExternal": "No",
        "Context": "from-agents",
        "Extension": "102",
    }
    attended = {
        "Event": "AttendedTransfer",
        "Timestamp": "1800000000.000200",
        "Result": "Success",
        **snapshot_headers("OrigTransferer", "PJSIP/101-00000001", "1.2", "1.1"),
        **snapshot_headers("SecondTransferer", "PJSIP/101-00000003", "1.3", "1.3"),
        **snapshot_headers("TransferTarget", "PJSIP/103-00000004", "1.4", "1.3"),
        "IsExternal": "Yes",
        "DestType": "Bridge",
    }

    blind_event = translate(blind)
    attended_event = translate(attended)

    assert isinstance(blind_event, BlindTransfer)
    assert blind_event.transferer.uniqueid == "1.2"
    assert blind_event.transferee is not None and blind_event.transferee.uniqueid == "1.1"
    assert blind_event.extension == "102"
    assert isinstance(attended_event, AttendedTransfer)
    assert attended_event.second_transferer.linkedid == "1.3"
    assert attended_event.transferee is None
    assert attended_event.target is not None and attended_event.target.name == "PJSIP/103-00000004"
    assert attended_event.dest_type == "Bridge"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("Event: Newchannel\nChannel: PJSIP/101-00000001", True),
        ("Event: Hangup", True),
        ("Event:  Hangup ", True),
        ("Event: CEL\nEventName: CHAN_START", False),
        ("Event: Newexten", False),
        ("Event: Hangups\nChannel: x", False),
        ("Event: CEL\nActionID: crm-1", True),  # answers one of our actions
        ("Event: VarSet\nVariable: BRIDGEPEER\nValue: PJSIP/101", False),
        ("Event: VarSet\nVariable: MIXMONITOR_FILENAME\nValue: /x.wav", True),
        ("Event: VarSet\nVariable: __INBOUND_DID\nValue: 5550100", True),
        ("Event: VarSet\nVariable: FOO\nValue: ${INBOUND_DID}", True),  # named anywhere
        ("Event: VarSet\nVariable: FOO\nActionID: crm-2", True),
        ("Event: VarSet ", True),
        ("Response: Success\nMessage: Authentication accepted", True),
        ("Asterisk Call Manager/11.0.0", True),
    ],
)
def test_worth_parsing_decides_from_the_raw_text(block: str, expected: bool) -> None:
    assert worth_parsing(block) is expected


@pytest.mark.parametrize("name", sorted(p.stem for p in CAPTURES.glob("*.ami")))
def test_worth_parsing_keeps_every_block_translate_uses(name: str) -> None:
    framed = AmiFramer().feed((CAPTURES / f"{name}.ami").read_bytes())
    texts = (CAPTURES / f"{name}.ami").read_text().replace("\r", "").split("\n\n")[:-1]
    texts[0] = texts[0].partition("\n")[2]  # the banner line

    assert len(texts) == len(framed)
    for text, block in zip(texts, framed, strict=True):
        assert isinstance(block, dict)
        if translate(block) is not None:
            assert worth_parsing(text), text
