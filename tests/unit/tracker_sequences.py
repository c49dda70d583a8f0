"""HAND-WRITTEN AMI event sequences -- NOT recorded from a PBX.

The recorded captures in ``tests/fixtures/ami`` have no transfers, no queue
where nobody answers, no caller abandoning a queue, no agents rung one after
another and no extension with two phones. The sequences here fill those gaps.
They were written by hand from the Asterisk 22 AMI event documentation
(docs.asterisk.org, API_Documentation/AMI_Events: Newchannel, Newstate,
DialBegin, DialEnd, Hangup, BridgeEnter, BridgeLeave, QueueCallerJoin,
QueueCallerLeave, QueueCallerAbandon, AgentCalled, AgentConnect,
AgentRingNoAnswer, AgentComplete, BlindTransfer, AttendedTransfer,
CoreShowChannel) and Asterisk's bridging code (a channel joining a bridge takes
the oldest Linkedid of the bridge), shaped like the recorded captures
(channel names, header spellings, ``Timestamp`` format, Linkedid rules).
Expected outcomes in the tests are what the documented behaviour implies, not
what a PBX was seen to do: when a real capture of the same scenario exists,
prefer it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

START = 1_800_000_000.0
_STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}
AGENT_NAMES = {
    "101": "Alice Agent",
    "102": "Bob Agent",
    "103": "Carol Agent",
    "104": "Dave Agent",
    "105": "Erin Agent",
}


@dataclass
class Chan:
    """A channel as the hand-written PBX knows it; headers() is its snapshot."""

    name: str
    uniqueid: str
    linkedid: str
    num: str
    cid_name: str
    context: str
    exten: str
    state: int = 0
    connected_num: str = "<unknown>"
    connected_name: str = "<unknown>"

    def headers(self, prefix: str = "") -> dict[str, str]:
        values = {
            "Channel": self.name,
            "ChannelState": str(self.state),
            "ChannelStateDesc": _STATE_DESC[self.state],
            "CallerIDNum": self.num,
            "CallerIDName": self.cid_name,
            "ConnectedLineNum": self.connected_num,
            "ConnectedLineName": self.connected_name,
            "Language": "en",
            "AccountCode": "",
            "Context": self.context,
            "Exten": self.exten,
            "Priority": "1",
            "Uniqueid": self.uniqueid,
            "Linkedid": self.linkedid,
        }
        return {prefix + key: value for key, value in values.items()}


@dataclass
class Pbx:
    """Builds one AMI event stream with a clock and Asterisk-like ids."""

    now: float = START
    messages: list[dict[str, str]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(0x40))
    _bridges: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def wait(self, seconds: float) -> None:
        self.now += seconds

    def emit(self, event: str, *parts: dict[str, str], **headers: str) -> None:
        self.now += 0.001
        msg = {"Event": event, "Privilege": "call,all", "Timestamp": f"{self.now:.6f}"}
        for part in parts:
            msg.update(part)
        msg.update(headers)
        self.messages.append(msg)

    # -- channels

    def channel(
        self,
        peer: str,
        num: str,
        name: str,
        context: str,
        exten: str,
        *,
        linkedid: str = "",
        state: int | None = None,
    ) -> Chan:
        """A new channel; without ``linkedid`` it starts a call (state Ring)."""
        uid = f"{int(START)}.{next(self._ids)}"
        ch = Chan(
            f"{peer}-{next(self._names):08x}", uid, linkedid or uid, num, name, context, exten
        )
        ch.state = state if state is not None else 4 if not linkedid else 0
        self.emit("Newchannel", ch.headers())
        return ch

    def customer(self, num: str, did: str, name: str = "<unknown>") -> Chan:
        ch = self.channel("PJSIP/carrier", num, name, "from-trunk", did)
        self.emit("VarSet", ch.headers(), Variable="__INBOUND_DID", Value=did)
        return ch

    def agent_leg(self, ext: str, linkedid: str) -> Chan:
        return self.channel(
            f"PJSIP/{ext}", ext, AGENT_NAMES[ext], "from-agents", "s", linkedid=linkedid
        )

    def local_pair(self, exten: str, context: str, linkedid: str) -> tuple[Chan, Chan]:
        base = f"Local/{exten}@{context}-{next(self._names):08x}"
        halves = []
        for half in (";1", ";2"):
            uid = f"{int(START)}.{next(self._ids)}"
            ch = Chan(base + half, uid, linkedid, exten, "<unknown>", context, exten)
            self.emit("Newchannel", ch.headers())
            halves.append(ch)
        return halves[0], halves[1]

    def state(self, ch: Chan, state: int) -> None:
        ch.state = state
        self.emit("Newstate", ch.headers())

    def hangup(self, ch: Chan, cause: int = 16, text: str = "Normal Clearing") -> None:
        self.emit("Hangup", ch.headers(), Cause=str(cause), **{"Cause-txt": text})

    # -- dialling

    def dial(self, caller: Chan | None, dest: Chan, dial_string: str) -> None:
        dest.connected_num = caller.num if caller else dest.num
        caller_headers = caller.headers() if caller else {}
        self.emit("DialBegin", caller_headers, dest.headers("Dest"), DialString=dial_string)

    def ring(self, caller: Chan | None, dest: Chan) -> None:
        self.state(dest, 5)
        caller_headers = caller.headers() if caller else {}
        self.emit("DialState", caller_headers, dest.headers("Dest"), DialStatus="RINGING")

    def dial_end(self, caller: Chan | None, dest: Chan, status: str) -> None:
        caller_headers = caller.headers() if caller else {}
        self.emit("DialEnd", caller_headers, dest.headers("Dest"), DialStatus=status)

    def answer(self, caller: Chan | None, dest: Chan) -> None:
        self.state(dest, 6)
        self.dial_end(caller, dest, "ANSWER")
        if caller is not None and caller.state != 6:
            self.state(caller, 6)

    # -- bridges

    def bridge(self, *chans: Chan) -> str:
        bridge_id = f"bridge-{next(self._bridges):04d}"
        self.emit("BridgeCreate", BridgeUniqueid=bridge_id, BridgeType="basic")
        for ch in chans:
            self.enter(bridge_id, ch)
        return bridge_id

    def enter(self, bridge_id: str, ch: Chan, swap: Chan | None = None) -> None:
        extra = {"SwapUniqueid": swap.uniqueid} if swap else {}
        self.emit("BridgeEnter", {"BridgeUniqueid": bridge_id}, ch.headers(), extra)

    def leave(self, bridge_id: str, *chans: Chan) -> None:
        for ch in chans:
            self.emit("BridgeLeave", {"BridgeUniqueid": bridge_id}, ch.headers())

    # -- queues

    def queue_event(self, event: str, caller: Chan, queue: str, **headers: str) -> None:
        self.emit(event, caller.headers(), Queue=queue, **headers)

    def member_event(
        self, event: str, caller: Chan, dest: Chan, queue: str, **headers: str
    ) -> None:
        member = {"Interface": dest.name.rpartition("-")[0], "MemberName": dest.cid_name}
        self.emit(event, caller.headers(), dest.headers("Dest"), {"Queue": queue}, member, headers)

    # -- reconnect

    def core_show_channel(self, ch: Chan, bridge_id: str = "", age: int = 10) -> dict[str, str]:
        minutes, seconds = divmod(age, 60)
        return {
            "Event": "CoreShowChannel",
            "ActionID": "resync-1",
            **ch.headers(),
            "BridgeId": bridge_id,
            "Application": "Dial" if not bridge_id else "AppDial",
            "ApplicationData": "",
            "Duration": f"00:{minutes:02d}:{seconds:02d}",
        }


def ringall_nobody_answers(agents: tuple[str, ...] = ("101", "102", "103", "104", "105")) -> Pbx:
    """Queue(support,t,,,30) ringall over five agents: 15 s member timeout,
    retry 2 s, second round cut by the queue timeout; the dialplan hangs up."""
    pbx = Pbx()
    caller = pbx.customer("+4940111222", "5550100", "Kunde Eins")
    pbx.state(caller, 6)
    pbx.queue_event("QueueCallerJoin", caller, "support", Position="1", Count="1")
    for round_no in (1, 2):
        legs = [pbx.agent_leg(ext, caller.linkedid) for ext in agents]
        for leg in legs:
            pbx.member_event("AgentCalled", caller, leg, "support")
            pbx.dial(caller, leg, leg.name.rpartition("-")[0])
        for leg in legs:
            pbx.ring(caller, leg)
        pbx.wait(15 if round_no == 1 else 11)
        for leg in legs:
            if round_no == 1:
                pbx.member_event("AgentRingNoAnswer", caller, leg, "support", RingTime="15")
                pbx.dial_end(caller, leg, "NOANSWER")
            else:
                pbx.dial_end(caller, leg, "CANCEL")
            pbx.hangup(leg, 16)
        pbx.wait(2)
    pbx.queue_event("QueueCallerLeave", caller, "support", Position="1", Count="0")
    pbx.hangup(caller, 16)
    return pbx


def queue_caller_abandons(agents: tuple[str, ...] = ("101", "102", "103")) -> Pbx:
    """Ringall queue; the caller hangs up after 8 s of ringing."""
    pbx = Pbx()
    caller = pbx.customer("+4940333444", "5550100", "Kunde Zwei")
    pbx.state(caller, 6)
    pbx.queue_event("QueueCallerJoin", caller, "support", Position="1", Count="1")
    legs = [pbx.agent_leg(ext, caller.linkedid) for ext in agents]
    for leg in legs:
        pbx.member_event("AgentCalled", caller, leg, "support")
        pbx.dial(caller, leg, leg.name.rpartition("-")[0])
        pbx.ring(caller, leg)
    pbx.wait(8)
    pbx.emit("HangupRequest", caller.headers(), Cause="16")
    for leg in legs:
        pbx.dial_end(caller, leg, "CANCEL")
        pbx.hangup(leg, 16)
    pbx.queue_event(
        "QueueCallerAbandon", caller, "support", Position="1", OriginalPosition="1", HoldTime="8"
    )
    pbx.hangup(caller, 16)
    return pbx


def rrmemory_second_agent_answers() -> Pbx:
    """Queue rrmemory: 101 rings 15 s unanswered, retry 2 s, 102 answers after 4 s,
    talks 10 s, the caller hangs up."""
    pbx = Pbx()
    caller = pbx.customer("+4940555666", "5550100")
    pbx.state(caller, 6)
    pbx.queue_event("QueueCallerJoin", caller, "support", Position="1", Count="1")
    first = pbx.agent_leg("101", caller.linkedid)
    pbx.member_event("AgentCalled", caller, first, "support")
    pbx.dial(caller, first, "PJSIP/101")
    pbx.ring(caller, first)
    pbx.wait(15)
    pbx.member_event("AgentRingNoAnswer", caller, first, "support", RingTime="15")
    pbx.dial_end(caller, first, "NOANSWER")
    pbx.hangup(first, 16)
    pbx.wait(2)
    second = pbx.agent_leg("102", caller.linkedid)
    pbx.member_event("AgentCalled", caller, second, "support")
    pbx.dial(caller, second, "PJSIP/102")
    pbx.ring(caller, second)
    pbx.wait(4)
    pbx.answer(caller, second)
    pbx.queue_event("QueueCallerLeave", caller, "support", Position="1", Count="0")
    pbx.member_event("AgentConnect", caller, second, "support", HoldTime="21", RingTime="4")
    bridge = pbx.bridge(second, caller)
    pbx.wait(10)
    pbx.member_event("AgentComplete", caller, second, "support", TalkTime="10", Reason="caller")
    pbx.leave(bridge, caller, second)
    pbx.hangup(caller)
    pbx.hangup(second)
    return pbx


def two_phones_one_extension(answer: bool = True) -> Pbx:
    """Dial(PJSIP/101) where 101 has two registered phones: two channels ring.
    With ``answer`` the second phone picks up; else the caller gives up."""
    pbx = Pbx()
    caller = pbx.customer("+4930777888", "5550101")
    desk = pbx.agent_leg("101", caller.linkedid)
    pbx.dial(caller, desk, "PJSIP/101")
    mobile = pbx.agent_leg("101", caller.linkedid)
    pbx.dial(caller, mobile, "PJSIP/101")
    pbx.ring(caller, desk)
    pbx.ring(caller, mobile)
    pbx.wait(3)
    if not answer:
        pbx.dial_end(caller, desk, "CANCEL")
        pbx.hangup(desk, 127, "Interworking, unspecified")
        pbx.wait(0.2)
        pbx.dial_end(caller, mobile, "CANCEL")
        pbx.hangup(mobile, 127, "Interworking, unspecified")
        pbx.hangup(caller, 127, "Interworking, unspecified")
        return pbx
    pbx.answer(caller, mobile)
    pbx.dial_end(caller, desk, "CANCEL")
    pbx.hangup(desk, 26, "Answered elsewhere")
    bridge = pbx.bridge(mobile, caller)
    pbx.wait(5)
    pbx.leave(bridge, caller, mobile)
    pbx.hangup(caller)
    pbx.hangup(mobile)
    return pbx


def _answered_inbound(pbx: Pbx, ext: str = "101") -> tuple[Chan, Chan, str]:
    """Inbound call to DID 5550101 answered by ``ext`` after 2 s, talking 4 s."""
    caller = pbx.customer("+4930123123", "5550101", "Kunde Drei")
    agent = pbx.agent_leg(ext, caller.linkedid)
    pbx.dial(caller, agent, f"PJSIP/{ext}")
    pbx.ring(caller, agent)
    pbx.wait(2)
    pbx.answer(caller, agent)
    bridge = pbx.bridge(agent, caller)
    pbx.wait(4)
    return caller, agent, bridge


def blind_transfer() -> Pbx:
    """101 answers, blind-transfers (#1) to 102; the customer's channel leaves
    the bridge and dials 102 from the dialplan; 102 answers after 3 s, they
    talk 6 s, the customer hangs up. One Linkedid throughout."""
    pbx = Pbx()
    caller, first, bridge = _answered_inbound(pbx)
    pbx.emit(
        "BlindTransfer",
        {"Result": "Success"},
        first.headers("Transferer"),
        caller.headers("Transferee"),
        {"BridgeUniqueid": bridge, "BridgeType": "basic", "BridgeNumChannels": "2"},
        IsExternal="No",
        Context="from-agents",
        Extension="102",
    )
    pbx.leave(bridge, caller, first)
    pbx.hangup(first)
    caller.context, caller.exten = "from-agents", "102"
    second = pbx.agent_leg("102", caller.linkedid)
    pbx.dial(caller, second, "PJSIP/102")
    pbx.ring(caller, second)
    pbx.wait(3)
    pbx.answer(caller, second)
    bridge2 = pbx.bridge(second, caller)
    pbx.wait(6)
    pbx.leave(bridge2, caller, second)
    pbx.hangup(caller)
    pbx.hangup(second)
    return pbx


def attended_transfer_local() -> Pbx:
    """DTMF attended transfer (*2) as the features code does it: 101 leaves the
    customer's bridge, a Local/103@from-agents pair is created with 101's
    Linkedid, ;1 joins 101 in a consultation bridge, ;2 dials 103. 103 answers
    after 3 s, they consult 5 s, 101 hangs up: ;1 moves into the customer's
    bridge (DestType Bridge), then Local optimisation swaps 103's channel in
    and the pair hangs up. Customer and 103 talk 7 s. One Linkedid."""
    pbx = Pbx()
    caller, first, bridge = _answered_inbound(pbx)
    pbx.leave(bridge, first)
    one, two = pbx.local_pair("103", "from-agents", caller.linkedid)
    consult = pbx.bridge(first, one)
    target = pbx.agent_leg("103", caller.linkedid)
    pbx.dial(two, target, "PJSIP/103")
    pbx.ring(two, target)
    pbx.wait(3)
    pbx.answer(two, target)
    inner = pbx.bridge(target, two)
    pbx.wait(5)
    pbx.leave(consult, first)
    pbx.emit(
        "AttendedTransfer",
        {"Result": "Success"},
        first.headers("OrigTransferer"),
        {"OrigBridgeUniqueid": bridge, "OrigBridgeType": "basic", "OrigBridgeNumChannels": "1"},
        first.headers("SecondTransferer"),
        {"SecondBridgeUniqueid": consult, "SecondBridgeType": "basic"},
        caller.headers("Transferee"),
        one.headers("TransferTarget"),
        IsExternal="No",
        DestType="Bridge",
        DestBridgeUniqueid=bridge,
    )
    pbx.leave(consult, one)
    pbx.enter(bridge, one)
    pbx.hangup(first)
    pbx.emit("LocalOptimizationBegin", one.headers("LocalOne"), two.headers("LocalTwo"))
    pbx.leave(inner, target)
    pbx.enter(bridge, target, swap=one)
    pbx.leave(bridge, one)
    pbx.leave(inner, two)
    pbx.emit("LocalOptimizationEnd", one.headers("LocalOne"), two.headers("LocalTwo"))
    pbx.hangup(one)
    pbx.hangup(two)
    pbx.wait(7)
    pbx.leave(bridge, caller, target)
    pbx.hangup(caller)
    pbx.hangup(target)
    return pbx


def attended_transfer_two_calls() -> tuple[Pbx, str, str]:
    """Phone-driven attended transfer: 101 holds the customer (call A), calls
    103 on a second line (call B, its own Linkedid), 103 answers after 2 s,
    after 5 s the phone completes the transfer (REFER/Replaces). The bridges
    merge: 103's channel joins the customer's bridge and takes the older
    Linkedid A; both 101 channels hang up; customer and 103 talk 6 s.
    Returns the stream and the Linkedids of A and B."""
    pbx = Pbx()
    caller, first, bridge = _answered_inbound(pbx)
    pbx.emit("MusicOnHoldStart", caller.headers(), Class="default")
    second = pbx.channel("PJSIP/101", "101", "Alice Agent", "from-agents", "103")
    target = pbx.agent_leg("103", second.linkedid)
    pbx.dial(second, target, "103")
    pbx.ring(second, target)
    pbx.wait(2)
    pbx.answer(second, target)
    consult = pbx.bridge(target, second)
    pbx.wait(5)
    pbx.emit(
        "AttendedTransfer",
        {"Result": "Success"},
        first.headers("OrigTransferer"),
        {"OrigBridgeUniqueid": bridge, "OrigBridgeType": "basic"},
        second.headers("SecondTransferer"),
        {"SecondBridgeUniqueid": consult, "SecondBridgeType": "basic"},
        caller.headers("Transferee"),
        target.headers("TransferTarget"),
        IsExternal="Yes",
        DestType="Bridge",
        DestBridgeUniqueid=bridge,
    )
    pbx.emit("MusicOnHoldStop", caller.headers())
    pbx.leave(consult, target)
    target.linkedid = caller.linkedid  # a channel joining a bridge takes its oldest Linkedid
    pbx.enter(bridge, target)
    pbx.leave(bridge, first)
    pbx.leave(consult, second)
    pbx.hangup(first)
    pbx.hangup(second)
    pbx.wait(6)
    pbx.leave(bridge, caller, target)
    pbx.hangup(target)
    pbx.hangup(caller)
    return pbx, caller.linkedid, second.linkedid


def click_to_dial_agent_does_not_answer() -> Pbx:
    """Originate(PJSIP/101, exten 01715559876, CallerID "CRM: ..." <01715559876>):
    the agent's phone rings 30 s unanswered; the originate fails."""
    pbx = Pbx()
    agent = pbx.channel("PJSIP/101", "101", "Alice Agent", "from-agents", "s", state=0)
    agent.num, agent.cid_name = "01715559876", "CRM: Mueller GmbH"
    pbx.emit("NewCallerid", agent.headers(), **{"CID-CallingPres": "0 (Presentation Allowed)"})
    pbx.dial(None, agent, "101")
    pbx.ring(None, agent)
    pbx.wait(30)
    pbx.dial_end(None, agent, "NOANSWER")
    pbx.hangup(agent, 19, "No answer")
    pbx.emit(
        "OriginateResponse",
        ActionID="crm-c2d-0002",
        Response="Failure",
        Channel="PJSIP/101",
        Context="from-agents",
        Exten="01715559876",
        Reason="3",
        Uniqueid="<null>",
        CallerIDNum="01715559876",
        CallerIDName="CRM: Mueller GmbH",
    )
    return pbx


def outbound_not_answered(status: str = "NOANSWER") -> Pbx:
    """101 dials 004930999888 through the carrier; the far end rings 10 s and
    the agent gives up (NOANSWER), or it is busy at once (BUSY)."""
    pbx = Pbx()
    agent = pbx.channel("PJSIP/101", "101", "Alice Agent", "from-agents", "004930999888")
    trunk = pbx.channel(
        "PJSIP/carrier", "+4930555010", "ACME Support", "from-trunk", "s", linkedid=agent.linkedid
    )
    pbx.dial(agent, trunk, "004930999888@carrier")
    if status == "BUSY":
        pbx.dial_end(agent, trunk, "BUSY")
        pbx.hangup(trunk, 17, "User busy")
        pbx.hangup(agent, 17, "User busy")
        return pbx
    pbx.ring(agent, trunk)
    pbx.wait(10)
    pbx.dial_end(agent, trunk, "CANCEL")
    pbx.hangup(trunk, 16)
    pbx.hangup(agent, 16)
    return pbx
