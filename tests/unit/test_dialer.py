"""Click-to-dial: the exact Originate action, how Asterisk reads its Variable header,
and what the call tracker makes of the call it starts.

``asterisk_variables`` re-implements, for the test only, how Asterisk 22 turns the
``Variable:`` header into channel variables: ``man_do_variable_value`` (main/manager.c)
splits it with ``AST_STANDARD_APP_ARGS`` (``__ast_app_separate_args`` in main/app.c:
commas outside parentheses, brackets and quotes; quotes and backslashes removed),
then each item at its first ``=``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from crmcomms.ami.framing import encode_action
from crmcomms.ami.translate import translate, worth_parsing
from crmcomms.config import AmiSettings, ConfigError, parse_settings
from crmcomms.telephony.calls import CallRinging
from crmcomms.telephony.dialer import Dialer, header_safe
from crmcomms.telephony.tracker import CallTracker
from tests.unit import tracker_sequences as hand
from tests.unit.test_tracker import check_pop_contract, ended, feed_all, kinds, messages

DEFAULT_VARIABLES = (
    "CRM_DIAL_NUMBER=01715559876,CRM_CUSTOMER_NUMBER=+491715559876,"
    "CONNECTEDLINE(num,i)=01715559876,CONNECTEDLINE(name,i)=CRM: 01715559876"
)


class NoAmi:
    """The dialer's AMI side, never used by ``originate_action``."""

    async def send_action(self, action: dict[str, str], timeout: float = 10) -> dict[str, str]:
        raise AssertionError("not sent")


def dialer(**ami: Any) -> Dialer:
    return Dialer(NoAmi(), AmiSettings(originate_context="from-agents", **ami), "DE")


def asterisk_variables(header: str) -> dict[str, str]:
    """The variables Asterisk sets from one Variable header value (see module docstring)."""
    items, current, paren, bracket, quote = [], "", 0, 0, False
    text = iter(header.lstrip(" \t"))
    for char in text:
        if char == "(":
            paren += 1
        elif char == ")":
            paren = max(paren - 1, 0)
        elif char == "[":
            bracket += 1
        elif char == "]":
            bracket = max(bracket - 1, 0)
        elif char == '"':
            quote = not quote
            continue
        elif char == "\\":
            char = next(text, "")
        elif char == "," and not (paren or bracket or quote):
            items.append(current)
            current = ""
            continue
        current += char
    items.append(current)
    pairs = [item.partition("=") for item in items]
    return {name: value for name, sep, value in pairs if sep and name}


def test_originate_action_default() -> None:
    action = dialer().originate_action("101", "+49 171 5559876")

    assert action == {
        "Action": "Originate",
        "Channel": "PJSIP/101",
        "Context": "from-agents",
        "Exten": "01715559876",
        "Priority": "1",
        "Timeout": "30000",
        "Async": "true",
        "Variable": DEFAULT_VARIABLES,
    }
    # no CallerID header: it would become the agent leg's caller ID *and* connected
    # line (main/pbx.c pbx_outgoing_attempt), i.e. the From the carrier sees
    assert "CallerID" not in action
    assert asterisk_variables(action["Variable"]) == {
        "CRM_DIAL_NUMBER": "01715559876",
        "CRM_CUSTOMER_NUMBER": "+491715559876",
        "CONNECTEDLINE(num,i)": "01715559876",
        "CONNECTEDLINE(name,i)": "CRM: 01715559876",
    }
    encode_action(action)  # one line per header


def test_originate_action_with_a_company_cli() -> None:
    cli = dialer(outbound_callerid="+4930555010", outbound_callerid_name="ACME Support")

    action = cli.originate_action("102", "030 1234567")

    assert action == {
        "Action": "Originate",
        "Channel": "PJSIP/102",
        "Context": "from-agents",
        "Exten": "0301234567",
        "Priority": "1",
        "Timeout": "30000",
        "Async": "true",
        "Variable": (
            "CRM_DIAL_NUMBER=0301234567,CRM_CUSTOMER_NUMBER=+49301234567,"
            "CONNECTEDLINE(num,i)=0301234567,CONNECTEDLINE(name,i)=CRM: 0301234567,"
            "CRM_OUTBOUND_CLI=+4930555010,CALLERID(num)=+4930555010,"
            "CALLERID(name)=ACME Support"
        ),
    }
    variables = asterisk_variables(action["Variable"])
    assert variables["CALLERID(num)"] == "+4930555010"
    assert variables["CONNECTEDLINE(num,i)"] == "0301234567"


def test_company_cli_number_only_keeps_the_agents_name() -> None:
    action = dialer(outbound_callerid="4930555010").originate_action("101", "0171 5559876")

    variables = asterisk_variables(action["Variable"])
    assert variables["CALLERID(num)"] == "4930555010"
    assert "CALLERID(name)" not in variables


def test_originate_abroad_other_channel_pattern_and_timeout() -> None:
    settings = {"agent_channel_patterns": ["SIP/{ext}-"], "originate_timeout": 45}
    action = dialer(**settings).originate_action("105", "+44 20 7946 0958")

    assert (action["Channel"], action["Exten"], action["Timeout"]) == (
        "SIP/105",
        "00442079460958",
        "45000",
    )
    assert asterisk_variables(action["Variable"])["CRM_CUSTOMER_NUMBER"] == "+442079460958"


def test_a_label_cannot_break_the_variable_header() -> None:
    label = 'Müller, "Berlin" (Mitte [2]) \\ GmbH\r\nEvil: yes'

    action = dialer().originate_action("101", "0171 5559876", label)

    variables = asterisk_variables(action["Variable"])
    assert variables["CONNECTEDLINE(name,i)"] == "CRM: Müller Berlin Mitte 2 GmbH Evil: yes"
    assert variables["CRM_DIAL_NUMBER"] == "01715559876"
    assert len(variables) == 4
    encode_action(action)
    assert header_safe("a,,b") == "a b"


def test_not_a_number_is_refused() -> None:
    with pytest.raises(Exception, match="not a phone number"):
        dialer().originate_action("101", "call me")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"outbound_callerid": "ACME"}, "ami.outbound_callerid: Value error, must be a phone"),
        ({"outbound_callerid": "+49 30 555"}, "ami.outbound_callerid: Value error"),
        ({"outbound_callerid_name": "ACME, Inc."}, "ami.outbound_callerid_name: Value error"),
        ({"outbound_callerid_name": 'say "hi"'}, "ami.outbound_callerid_name: Value error"),
    ],
)
def test_bad_company_cli_is_rejected_with_its_key(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings({"ami": values}, env={})


# ---------------------------------------------------------------- the tracker


def originated_call(action: dict[str, str], *, answer: bool = True) -> hand.Pbx:
    """HAND-WRITTEN (not recorded): what Asterisk 22 emits for ``action``, shaped like
    the recorded click-to-dial.ami but with the new Originate: the agent's channel
    keeps its own caller ID (or takes the CALLERID(...) variables), the other
    variables come as VarSet, CONNECTEDLINE(...) as NewConnectedLine, all before
    DialBegin (main/pbx.c sets them before dialling). Dial() then gives the carrier
    leg the agent channel's caller ID as connected line (apps/app_dial.c)."""
    pbx = hand.Pbx()
    ext = action["Channel"].rpartition("/")[2]
    agent = pbx.channel(
        action["Channel"], ext, hand.AGENT_NAMES[ext], action["Context"], "s", state=0
    )
    for name, value in asterisk_variables(action["Variable"]).items():
        field = name.partition("(")[2].partition(",")[0].rstrip(")")
        if name.startswith("CONNECTEDLINE("):
            setattr(agent, {"num": "connected_num", "name": "connected_name"}[field], value)
            pbx.emit("NewConnectedLine", agent.headers())
        elif name.startswith("CALLERID("):
            setattr(agent, {"num": "num", "name": "cid_name"}[field], value)
            pbx.emit("NewCallerid", agent.headers())
        else:
            pbx.emit("VarSet", agent.headers(), Variable=name, Value=value)
    pbx.emit("DialBegin", agent.headers("Dest"), DialString=ext)
    pbx.ring(None, agent)
    pbx.wait(2)
    if not answer:
        pbx.wait(28)
        pbx.dial_end(None, agent, "NOANSWER")
        pbx.hangup(agent, 19, "No answer")
        return pbx
    pbx.state(agent, 6)
    pbx.dial_end(None, agent, "ANSWER")
    agent.exten = action["Exten"]
    pbx.emit(
        "OriginateResponse",
        Response="Success",
        Channel=agent.name,
        Exten=agent.exten,
        Context=action["Context"],
        Reason="4",
        Uniqueid=agent.uniqueid,
    )
    trunk = pbx.channel(
        "PJSIP/carrier", "<unknown>", "<unknown>", "from-trunk", "s", linkedid=agent.linkedid
    )
    trunk.connected_num, trunk.connected_name = agent.num, agent.cid_name
    pbx.emit(
        "DialBegin", agent.headers(), trunk.headers("Dest"), DialString=f"{action['Exten']}@carrier"
    )
    pbx.ring(agent, trunk)
    pbx.wait(3)
    pbx.answer(agent, trunk)
    bridge = pbx.bridge(agent, trunk)
    pbx.wait(5)
    pbx.leave(bridge, trunk, agent)
    pbx.hangup(trunk)
    pbx.hangup(agent)
    return pbx


@pytest.mark.parametrize("ami", [{}, {"outbound_callerid": "+4930555010"}])
def test_tracker_learns_the_callee_from_the_new_originate(ami: dict[str, str]) -> None:
    action = dialer(**ami).originate_action("101", "+49 171 5559876", "Mueller GmbH")
    pbx = originated_call(action)
    trunk_dial = [m for m in pbx.messages if m["Event"] == "DialBegin"][1]
    # what the carrier is sent (chan_pjsip's From): the agent's own or the company CLI
    assert trunk_dial["DestConnectedLineNum"] == ami.get("outbound_callerid", "101")

    events = feed_all(CallTracker(), pbx.messages)

    check_pop_contract(events)
    assert kinds(events) == [("ringing", "101"), ("answered", "101"), ("ended", None)]
    ringing = events[0]
    assert isinstance(ringing, CallRinging)
    assert (ringing.call.caller, ringing.call.callee) == ("101", "01715559876")
    [call] = ended(events)
    assert (call.direction, call.caller, call.caller_name) == ("outbound", "101", "Alice Agent")
    assert (call.callee, call.status, call.agents_rung) == ("01715559876", "answered", ("101",))
    assert (call.ring_seconds, call.talk_seconds) == (5, 5)


def test_tracker_new_originate_agent_does_not_answer() -> None:
    action = dialer(outbound_callerid="+4930555010").originate_action("101", "0171 5559876")

    events = feed_all(CallTracker(), originated_call(action, answer=False).messages)

    assert kinds(events) == [("ringing", "101"), ("ring_stopped", "101"), ("ended", None)]
    [call] = ended(events)
    assert (call.direction, call.caller, call.callee) == ("outbound", "101", "01715559876")
    assert call.status == "failed"


def test_tracker_new_originate_joined_half_way() -> None:
    action = dialer(outbound_callerid="+4930555010").originate_action("101", "0171 5559876")
    msgs = originated_call(action).messages
    for k in range(len(msgs) + 1):
        events = feed_all(CallTracker(), msgs[k:])
        assert all(n == 1 for n in Counter(c.linkedid for c in ended(events)).values())
        check_pop_contract(events)
        for call in ended(events):
            assert call.callee in ("01715559876", "")
            assert call.caller != "+4930555010"


def test_recorded_old_originate_still_gives_the_callee() -> None:
    """click-to-dial.ami was recorded with the old Originate (number in the CallerID)."""
    events = feed_all(CallTracker(), messages("click-to-dial"))

    ringing = events[0]
    assert isinstance(ringing, CallRinging)
    assert ringing.call.callee == "01715559876"
    [call] = ended(events)
    assert (call.caller, call.callee, call.status) == ("101", "01715559876", "answered")


def test_the_dial_number_varset_reaches_the_tracker() -> None:
    block = (
        "Event: VarSet\nPrivilege: dialplan,all\nChannel: PJSIP/101-00000029\n"
        "Uniqueid: 1.1\nLinkedid: 1.1\nVariable: CRM_DIAL_NUMBER\nValue: 01715559876\n"
    )
    other = block.replace("CRM_DIAL_NUMBER", "CRM_CUSTOMER_NUMBER")

    assert worth_parsing(block) and not worth_parsing(other)
    fields = dict(line.split(": ", 1) for line in block.splitlines())
    event = translate(fields)
    assert event is not None and getattr(event, "variable", None) == "CRM_DIAL_NUMBER"
