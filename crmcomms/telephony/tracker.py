"""The call tracker: typed PBX events in, call events out. Sans-I/O, no clock.

It takes the values of :mod:`crmcomms.pbx_events` (the AMI edge,
:mod:`crmcomms.ami.translate`, builds them) and knows nothing of the wire.

Channels are keyed by ``Uniqueid``, calls by ``Linkedid`` (the Uniqueid of the
call's first channel, shared by every leg). Asterisk rewrites a channel's
Linkedid to the oldest one of a bridge it joins, so after an attended transfer
between two calls the target's channel reports the original Linkedid: whenever
an event shows a known channel under another Linkedid, the channel moves to
that call, and a call whose last channel left ends.

Times come only from the events (``Timestamp`` header, manager.conf
``timestampevents = yes``); an event without one takes the last time seen.

Odd corners of the protocol handled here:

- Local channels come in pairs (``Local/103@ctx-00000001;1`` and ``;2``), one
  half in a bridge, the other dialling or in another bridge. Two bridges joined
  through a pair are one conversation when deciding who talked to whom.
- Click-to-dial (AMI Originate): the PBX first dials the agent (``DialBegin``
  without a caller channel), so the agent's channel is the call's first one;
  the number to dial comes in crmcomms' ``CRM_DIAL_NUMBER`` variable and as the
  connected line the agent's phone shows (older crmcomms put it in the caller
  id); the call is answered when the dialled party answers, not the agent.
- Ringall queues cancel the losers with ``DialEnd CANCEL`` (sometimes twice);
  member timeouts give ``AgentRingNoAnswer``; both end the agent's ringing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from crmcomms.pbx_events import (
    DIAL_NUMBER_VARIABLE,
    RECORDING_VARIABLE,
    AgentCalled,
    AgentConnect,
    AgentRingNoAnswer,
    AmiEvent,
    AttendedTransfer,
    BlindTransfer,
    BridgeEnter,
    BridgeLeave,
    ChannelSnapshot,
    CoreShowChannel,
    DialBegin,
    DialEnd,
    Hangup,
    NewCallerid,
    Newchannel,
    Newstate,
    OriginateResponse,
    QueueCallerAbandon,
    QueueCallerJoin,
    VarSet,
)
from crmcomms.telephony.agents import agent_matcher
from crmcomms.telephony.call_state import Bridges, LiveCall, LiveChannel, RecentIds, restored
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
from crmcomms.telephony.reconcile import merge

_RINGING = 5  # ChannelState: the far end is alerting
_UP = 6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CallTracker:
    """Follows channels, bridges and queues; reports calls as immutable values.

    ``agent_patterns`` name agent phones: ``{ext}`` marks the extension in the
    channel name (``PJSIP/{ext}-`` matches ``PJSIP/101-0000001d``) and must
    match ``extension_pattern`` (digits), so trunks like
    ``PJSIP/carrier-0000001c`` are not agents. Local channels are never agents
    but belong to the call. Ended calls and hung-up channels are forgotten;
    only the last ``remember`` ids of each are kept to ignore stray events.
    """

    def __init__(
        self,
        agent_patterns: Sequence[str] = ("PJSIP/{ext}-", "SIP/{ext}-"),
        *,
        extension_pattern: str = r"\d+",
        remember: int = 4096,
    ) -> None:
        self._agent_of = agent_matcher(agent_patterns, extension_pattern)
        self._channels: dict[str, LiveChannel] = {}
        self._calls: dict[str, LiveCall] = {}
        self._bridges = Bridges()
        self._gone_channels = RecentIds(remember)
        self._ended_calls = RecentIds(remember)
        self._seq = itertools.count()
        self._now: datetime | None = None
        self._resyncing = False
        self._unseen: dict[str, CallSnapshot] = {}
        self._remember = remember
        self._out: list[CallEvent] = []
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            Newchannel: self._on_newchannel,
            Newstate: self._on_newstate,
            NewCallerid: self._on_new_callerid,
            DialBegin: self._on_dial_begin,
            DialEnd: self._on_dial_end,
            Hangup: self._on_hangup,
            BridgeEnter: self._on_bridge_enter,
            BridgeLeave: self._on_bridge_leave,
            VarSet: self._on_var_set,
            QueueCallerJoin: self._on_queue_join,
            QueueCallerAbandon: self._on_queue_abandon,
            AgentCalled: self._on_agent_called,
            AgentRingNoAnswer: self._on_agent_ring_no_answer,
            AgentConnect: self._on_agent_connect,
            BlindTransfer: self._on_blind_transfer,
            AttendedTransfer: self._on_attended_transfer,
            OriginateResponse: self._on_originate_response,
        }

    # ------------------------------------------------------------ public API

    def feed(self, event: AmiEvent) -> list[CallEvent]:
        """Apply one event; return the call events it caused, in order."""
        if event.timestamp is not None:
            self._now = event.timestamp
        handler = self._handlers.get(type(event))
        if handler is None:
            return []
        self._out = []
        handler(event)
        return self._out

    def active_calls(self) -> list[CallSnapshot]:
        """Every call in progress, as known now."""
        now = self._time()
        return [call.snapshot(now) for call in self._calls.values()]

    @property
    def last_time(self) -> datetime | None:
        """The PBX time of the last event (or channel list) fed, None before any."""
        return self._now

    @property
    def channels_tracked(self) -> int:
        """How many live channels the tracker follows (a gauge for /metrics)."""
        return len(self._channels)

    def resync(
        self, channels: Sequence[CoreShowChannel], pbx_now: datetime | None
    ) -> list[CallEvent]:
        """Align with the channels Asterisk listed (CoreShowChannels) after a login.

        ``pbx_now`` is the PBX's time of the list (the ``Timestamp`` of a Ping
        answered just before it), None if unknown. Fed at the list's place in
        the event stream. Known channels missing from the list hung up while the
        link was down: a call left without channels ends at an unknown time, with
        the outcome known so far (``unknown`` if nobody was seen answering).
        Listed channels are adopted, dated by their ``Duration``; a bridge joined
        unseen is an answer at an unknown time. Restored calls (:meth:`restore`)
        that are not listed end the same way.
        """
        self._out = []
        if pbx_now is not None:
            self._now = pbx_now
        self._resyncing = True
        try:
            present = {item.channel.uniqueid for item in channels}
            for gone in [ch for uid, ch in self._channels.items() if uid not in present]:
                gone.call.end_unseen = True
                self._ring_stop(gone)
                self._drop_channel(gone)
            for item in channels:
                self._adopt(item, pbx_now)
            for bridge in self._bridges.ids():
                self._connect(bridge)
            listed = {item.channel.linkedid for item in channels}
            for call in [c for c in self._calls.values() if not c.channels]:
                if call.linkedid not in listed:
                    call.end_unseen = True
                    self._end_call(call)
            for call in self._calls.values():
                call.end_unseen = False  # still alive: its end will be seen
        finally:
            self._resyncing = False
        return self._out

    def restore(self, calls: Sequence[CallSnapshot]) -> None:
        """Take over calls a previous run logged as ringing or talking (start-up).

        They wait, without channels, for the first :meth:`resync`: the channels
        listed under their Linkedid continue them, the others end them unseen.
        """
        for snap in calls:
            if snap.linkedid in self._calls:
                continue
            self._ended_calls.discard(snap.linkedid)
            self._calls[snap.linkedid] = restored(snap)

    def backfill(
        self, calls: Sequence[tuple[CallSnapshot, CallSnapshot | None]]
    ) -> list[CallEvent]:
        """Apply calls read from the CDR, each with what the log holds of it.

        Calls in progress are left to their live events; a call ended unseen in
        this run is merged with its last snapshot here (the log may not have it
        yet). Each call that changes ends (again) with the merged facts.
        """
        out: list[CallEvent] = []
        for cdr, logged in calls:
            lid = cdr.linkedid
            if lid in self._calls:
                continue
            merged = merge(self._unseen.get(lid, logged), cdr)
            if merged is None:
                continue
            self._remember_unseen(merged)
            self._ended_calls.add(lid)
            out.append(CallEnded(merged))
        return out

    def channels_of(self, linkedid: str) -> list[tuple[str, str | None, str | None]]:
        """The live channels of a call, oldest first: (name, agent extension, bridge id)
        (call controls act on them)."""
        call = self._calls.get(linkedid)
        if call is None:
            return []
        chans = sorted(call.channels.values(), key=lambda ch: ch.seq)
        return [(ch.name, ch.agent, ch.bridge) for ch in chans]

    def agent_of(self, channel: str) -> str | None:
        """The agent extension of a channel name, None for trunks and Local channels."""
        return self._agent_of(channel)

    # ------------------------------------------------------------ channels

    def _time(self) -> datetime:
        return self._now or _EPOCH

    def _extension_of(self, snap: ChannelSnapshot) -> str:
        """The extension a channel stands for (transfer parties)."""
        if snap.name.startswith("Local/"):
            return snap.name[6:].partition("@")[0]
        return self._agent_of(snap.name) or snap.caller_num or ""

    def _channel(self, snap: ChannelSnapshot, create: bool = True) -> LiveChannel | None:
        """The tracked channel of a snapshot, created if new (joining half-way)."""
        ch = self._channels.get(snap.uniqueid)
        if ch is not None:
            if ch.call.linkedid != snap.linkedid:
                self._relink(ch, snap.linkedid)
            return ch
        if not create or snap.uniqueid in self._gone_channels:
            return None
        call = self._call_for(snap.linkedid)
        return None if call is None else self._add_channel(call, snap)

    def _call_for(self, linkedid: str) -> LiveCall | None:
        call = self._calls.get(linkedid)
        if call is None and linkedid not in self._ended_calls:
            call = self._calls[linkedid] = LiveCall(linkedid, self._time())
        return call

    def _add_channel(self, call: LiveCall, snap: ChannelSnapshot) -> LiveChannel:
        name = snap.name
        pair = name.rpartition(";")[0] if name.startswith("Local/") else None
        agent = None if pair else self._agent_of(name)
        ch = LiveChannel(snap.uniqueid, name, call, next(self._seq), agent, pair)
        self._channels[ch.uniqueid] = call.channels[ch.uniqueid] = ch
        self._bridges.add_local(ch)
        call.has_customer = call.has_customer or ch.is_customer
        if pair is None and (call.origin is None or ch.uniqueid == call.linkedid):
            call.set_origin(ch, snap.caller_num, snap.caller_name, _number(snap.exten))
        return ch

    def _relink(self, ch: LiveChannel, linkedid: str) -> None:
        """Asterisk gave the channel another Linkedid: it now belongs to that call."""
        call = self._call_for(linkedid)
        if call is not None:
            self._move(ch, call)

    def _move(self, ch: LiveChannel, call: LiveCall) -> None:
        old = ch.call
        if old is call:
            return
        self._ring_stop(ch)
        del old.channels[ch.uniqueid]
        ch.call = call
        call.channels[ch.uniqueid] = ch
        call.has_customer = call.has_customer or ch.is_customer
        if not old.channels and old.reported:
            self._end_call(old)
        elif not old.channels:  # e.g. a pickup code's own call: nothing to log
            self._calls.pop(old.linkedid, None)
            self._ended_calls.add(old.linkedid)

    def _drop_channel(self, ch: LiveChannel) -> None:
        call = ch.call
        del self._channels[ch.uniqueid]
        del call.channels[ch.uniqueid]
        self._bridges.forget(ch)
        self._gone_channels.add(ch.uniqueid)
        if not call.channels:
            self._end_call(call)

    def _adopt(self, item: CoreShowChannel, pbx_now: datetime | None) -> None:
        snap = item.channel
        new = snap.uniqueid not in self._channels
        if new:
            self._gone_channels.discard(snap.uniqueid)
            self._ended_calls.discard(snap.linkedid)
        fresh_call = snap.linkedid not in self._calls
        ch = self._channel(snap)
        if ch is None:
            return
        call = ch.call
        since = None
        if pbx_now is not None and item.duration is not None:
            since = pbx_now - item.duration
        if fresh_call:
            call.start_unknown, call.ring_unknown = since is None, True
        if new and since is not None and (fresh_call or since < call.started_at):
            call.started_at = since
        if item.bridge_id is None:
            self._bridges.leave(ch)
        else:
            self._bridges.join(ch, item.bridge_id)
        if snap.state == _RINGING:
            if new and call.first_ring_at is None and ch is not call.origin and since:
                call.first_ring_at = since  # the channel rings since it exists
                call.ring_unknown = False
            self._ring_start(ch)
        elif snap.state == _UP and ch.ringing:
            self._channel_answered(ch)

    # ------------------------------------------------------------ ringing and answer

    def _dialling(self, dest: LiveChannel) -> None:
        dest.dialled = True
        call = dest.call
        if call.first_ring_at is None and not self._resyncing:
            call.first_ring_at = self._time()
            call.ring_unknown = bool(call.agents_rung)  # rang unseen before this ring?
        if dest.agent is not None:
            call.add_rung(dest.agent)

    def _ring_start(self, ch: LiveChannel) -> None:
        if ch is not ch.call.origin or ch.dialled:
            self._dialling(ch)
        agent, call = ch.agent, ch.call
        if agent is None or ch.ringing or ch.answered:
            return
        if call.add_ringing(ch, agent):
            self._emit(CallRinging(self._snapshot(call), agent))

    def _ring_stop(self, ch: LiveChannel) -> None:
        """The device stopped ringing unanswered; the pop goes when none rings."""
        call, agent = ch.call, ch.agent
        if call.remove_ringing(ch) and agent is not None:
            del call.pops[agent]
            self._emit(CallRingStopped(self._snapshot(call), agent))

    def _channel_answered(self, ch: LiveChannel) -> None:
        if ch.answered:
            return
        ch.answered = True
        call = ch.call
        call.remove_ringing(ch)
        # The originated agent leg of click-to-dial and Local halves answer
        # nothing themselves: the call is answered by the party they reach. An
        # outside number an inbound call is sent to (a mobile with a "press 1 to
        # accept" prompt) answers the caller only once bridged with them.
        if ch is call.origin or ch.local_pair is not None:
            return
        if call.direction == "inbound" and ch.is_customer:
            return  # _connect answers when the bridge joins them
        self._answer(call, ch)

    def _answer(self, call: LiveCall, ch: LiveChannel) -> None:
        first = call.answered_at is None and not call.answer_unseen
        if first and self._resyncing:
            call.answer_unseen = True  # answered while the link was down: when is unknown
        elif first:
            call.answered_at = self._time()
        if ch.agent is not None:
            if first and call.direction != "outbound":
                call.answered_by = ch.agent
            self._answered(call, ch.agent)
        caller_agent = call.origin.agent if call.origin is not None else None
        if first and caller_agent is not None and caller_agent != ch.agent:
            self._answered(call, caller_agent)

    def _answered(self, call: LiveCall, agent: str) -> None:
        call.pops.pop(agent, None)
        self._emit(CallAnswered(self._snapshot(call), agent))

    # ------------------------------------------------------------ bridges

    def _connect(self, bridge: str) -> None:
        """Note who talks with whom once two parties share a conversation."""
        parties = self._bridges.parties(bridge)
        if len(parties) < 2:
            return
        with_customer = any(ch.is_customer for ch in parties)
        for ch in parties:
            call = ch.call
            if call.answered_at is None and not call.answer_unseen and ch is not call.origin:
                ch.answered = True  # joined half-way: the answer itself was missed
                call.remove_ringing(ch)
                self._answer(call, ch)
            if ch.agent is None or ch.agent in call.talked:
                continue
            if with_customer or not call.has_customer:
                call.talked.append(ch.agent)

    # ------------------------------------------------------------ end of a call

    def _end_call(self, call: LiveCall) -> None:
        if call.pops:
            snapshot = self._snapshot(call)
            for agent in call.pops:
                self._emit(CallRingStopped(snapshot, agent))
            call.pops.clear()
        call.ringing.clear()
        if not call.end_unseen:
            call.ended_at = self._time()
        self._emit(CallEnded(self._snapshot(call)))
        if call.end_unseen:
            self._remember_unseen(self._out[-1].call)
        call.origin = None  # the channel points back at the call: let refcounting free both
        self._calls.pop(call.linkedid, None)
        self._ended_calls.add(call.linkedid)

    def _remember_unseen(self, snap: CallSnapshot) -> None:
        """Keep a call whose end was not seen, for the CDR to complete (bounded)."""
        self._unseen.pop(snap.linkedid, None)
        if snap.times_uncertain or snap.status == "unknown":
            self._unseen[snap.linkedid] = snap
            if len(self._unseen) > self._remember:
                del self._unseen[next(iter(self._unseen))]

    def _emit(self, event: CallEvent) -> None:
        self._out.append(event)

    def _snapshot(self, call: LiveCall) -> CallSnapshot:
        call.reported = True
        return call.snapshot(self._time())

    # ------------------------------------------------------------ event handlers

    def _on_newchannel(self, event: Newchannel) -> None:
        snap = event.channel
        self._gone_channels.discard(snap.uniqueid)
        if snap.uniqueid == snap.linkedid:
            self._ended_calls.discard(snap.linkedid)
        ch = self._channel(snap)
        if ch is not None and snap.state == _RINGING:
            self._ring_start(ch)

    def _on_newstate(self, event: Newstate) -> None:
        ch = self._channel(event.channel)
        if ch is None:
            return
        state = event.channel.state
        if state == _RINGING:
            self._ring_start(ch)
        elif state == _UP and (ch.dialled or ch.ringing):
            self._channel_answered(ch)

    def _on_new_callerid(self, event: NewCallerid) -> None:
        """The name/number the dialplan presents to the agents (until answered)."""
        ch = self._channel(event.channel)
        if ch is None:
            return
        call, snap = ch.call, event.channel
        if ch is call.origin and ch.agent is None and call.answered_at is None:
            call.caller = snap.caller_num or call.caller
            call.caller_name = snap.caller_name or call.caller_name

    def _on_dial_begin(self, event: DialBegin) -> None:
        dest = self._channel(event.dest)
        if dest is None:
            return
        caller = self._channel(event.caller) if event.caller is not None else None
        self._dialling(dest)
        call, origin = dest.call, dest.call.origin
        if origin is None or dest is origin:
            if event.caller is None and not call.callee_known:
                # Originate: the agent's phone is shown the number to dial.
                number = event.dest.connected_num or event.dest.caller_num
                if number and number != dest.agent:
                    call.callee = number
            return
        if origin.agent is None:
            return
        if dest.local_pair is None and not call.direction_known:
            call.direction = "internal" if dest.agent is not None else "outbound"
            call.direction_known = True
        if caller is origin and event.caller is not None and not call.callee_known:
            call.callee = _number(event.caller.exten) or _dialled(event.dial_string)
            call.callee_known = bool(call.callee)

    def _on_dial_end(self, event: DialEnd) -> None:
        dest = self._channel(event.dest, create=False)
        call = dest.call if dest is not None else self._calls.get(event.dest.linkedid)
        if call is None:
            return
        if dest is None or dest is not call.origin:
            call.last_dial_status = event.status
        if dest is None:
            return
        if event.status == "ANSWER":
            self._channel_answered(dest)
        else:
            self._ring_stop(dest)

    def _on_hangup(self, event: Hangup) -> None:
        ch = self._channel(event.channel, create=False)
        if ch is None:
            return
        self._ring_stop(ch)
        ch.call.note_cause(ch, event.cause, event.cause_text)
        self._drop_channel(ch)

    def _on_bridge_enter(self, event: BridgeEnter) -> None:
        ch = self._channel(event.channel)
        if ch is not None:
            self._bridges.join(ch, event.bridge_id)
            self._connect(event.bridge_id)

    def _on_bridge_leave(self, event: BridgeLeave) -> None:
        ch = self._channel(event.channel, create=False)
        if ch is not None and ch.bridge == event.bridge_id:
            self._bridges.leave(ch)

    def _on_var_set(self, event: VarSet) -> None:
        ch = self._channel(event.channel)
        value = event.value
        if ch is None or value is None:
            return
        call = ch.call
        if event.variable == RECORDING_VARIABLE:
            call.recording = value
        elif event.variable == DIAL_NUMBER_VARIABLE:
            if not call.callee_known:
                call.callee = value
        elif not call.did_from_variable:
            call.did, call.did_from_variable = value, True
            if call.direction == "inbound" and not call.callee:
                call.callee = value

    def _on_queue_join(self, event: QueueCallerJoin) -> None:
        ch = self._channel(event.channel)
        if ch is not None:
            ch.call.queue = event.queue

    def _on_queue_abandon(self, event: QueueCallerAbandon) -> None:
        ch = self._channel(event.channel)
        if ch is not None:
            ch.call.abandoned = True
            ch.call.queue = ch.call.queue or event.queue

    def _on_agent_called(self, event: AgentCalled) -> None:
        dest = self._channel(event.dest)
        if dest is not None:
            self._dialling(dest)

    def _on_agent_ring_no_answer(self, event: AgentRingNoAnswer) -> None:
        dest = self._channel(event.dest, create=False)
        if dest is not None:
            self._ring_stop(dest)

    def _on_agent_connect(self, event: AgentConnect) -> None:
        dest = self._channel(event.dest, create=False)
        if dest is not None:
            self._channel_answered(dest)

    def _on_blind_transfer(self, event: BlindTransfer) -> None:
        call = self._call_of(event.transferee, event.transferer)
        if event.result != "Success" or call is None:
            return
        from_ext = self._extension_of(event.transferer)
        self._transferred(call, Transfer(from_ext, event.extension or "", "blind"))

    def _on_attended_transfer(self, event: AttendedTransfer) -> None:
        """The customer's call absorbs the target, which may come from a second call."""
        first, second, target = event.orig_transferer, event.second_transferer, event.target
        call = self._call_of(event.transferee, first, second)
        if event.result != "Success" or event.dest_type == "Fail" or call is None:
            return
        from_ext = self._extension_of(first)
        if target is not None:
            to_ext = self._extension_of(target)
            moved = self._channels.get(target.uniqueid)
            if moved is not None:
                self._move(moved, call)
        else:
            to_ext = self._consulted(second, from_ext)
        self._transferred(call, Transfer(from_ext, to_ext, "attended"))

    def _on_originate_response(self, event: OriginateResponse) -> None:
        ch = self._channels.get(event.uniqueid or "")
        if ch is not None and ch is ch.call.origin and event.exten and not ch.call.callee_known:
            ch.call.callee = event.exten

    def _call_of(self, *snaps: ChannelSnapshot | None) -> LiveCall | None:
        present = [snap for snap in snaps if snap is not None]
        for snap in present:
            ch = self._channels.get(snap.uniqueid)
            if ch is not None:
                return ch.call
        for snap in present:
            call = self._calls.get(snap.linkedid)
            if call is not None:
                return call
        return None

    def _transferred(self, call: LiveCall, transfer: Transfer) -> None:
        call.transfers.append(transfer)
        self._emit(CallTransferred(self._snapshot(call), transfer))

    def _consulted(self, second: ChannelSnapshot, transferer: str) -> str:
        """The target of an attended transfer whose event names no target channel.

        Asterisk 13-15 leave the ``TransferTarget*`` headers out (always for a
        "blonde" transfer, ``DestType: App``, where the target still rings), and
        Asterisk 22 does for an ``Atxfer`` through a Local channel. The target is
        then the one agent the transferer's consultation leg talked to, else the
        one it rings; several (a ring group) or none: the number it dialled.
        """
        ch = self._channels.get(second.uniqueid)
        consult = ch.call if ch is not None else self._calls.get(second.linkedid)
        if consult is not None:
            mine = {transferer, self._agent_of(second.name)}
            for agents in (consult.talked, consult.ringing):
                others = [agent for agent in agents if agent not in mine]
                if len(others) == 1:
                    return others[0]
        return second.connected_num or _number(second.exten)


def _number(exten: str | None) -> str:
    """A dialplan extension as a dialled number ('s' is the start extension)."""
    return "" if exten is None or exten == "s" else exten


def _dialled(dial_string: str | None) -> str:
    """``004930123456@carrier`` or ``PJSIP/101`` -> the number dialled."""
    if not dial_string:
        return ""
    return dial_string.rpartition("/")[2].partition("@")[0]
