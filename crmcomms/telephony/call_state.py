"""The call tracker's working state, and the rules that judge a call's outcome.

Mutable, private to :mod:`crmcomms.telephony.tracker`: what it knows of each
live channel, call and bridge. :meth:`LiveCall.snapshot` turns a call into the
immutable :class:`~crmcomms.telephony.calls.CallSnapshot` the rest of the
program sees; :meth:`LiveCall.status` holds the rules for the final status.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from crmcomms.telephony.calls import CallSnapshot, CallStatus, Direction, Transfer

USER_BUSY = 17  # Q.850 hang-up cause


@dataclass(slots=True, eq=False)
class LiveChannel:
    """One Asterisk channel (by Uniqueid) and the call it belongs to now."""

    uniqueid: str
    name: str
    call: LiveCall
    seq: int  # creation order
    agent: str | None  # the extension, for agent phones
    local_pair: str | None  # "Local/x@ctx-0001" for both halves of a Local pair
    dialled: bool = False
    ringing: bool = False
    answered: bool = False
    bridge: str | None = None

    @property
    def is_customer(self) -> bool:
        """Neither an agent's phone nor a Local channel: the outside party."""
        return self.agent is None and self.local_pair is None


@dataclass(slots=True, eq=False)
class LiveCall:
    """One call (by Linkedid) while it lasts."""

    linkedid: str
    started_at: datetime
    channels: dict[str, LiveChannel] = field(default_factory=dict)
    origin: LiveChannel | None = None  # the first non-Local channel
    direction: Direction = "inbound"
    direction_known: bool = False
    callee_known: bool = False
    did_from_variable: bool = False
    has_customer: bool = False
    caller: str = ""
    caller_name: str = ""
    callee: str = ""
    did: str = ""
    queue: str = ""
    agents_rung: list[str] = field(default_factory=list)
    ringing: dict[str, set[str]] = field(default_factory=dict)  # agent -> ringing uniqueids
    pops: dict[str, None] = field(default_factory=dict)  # agents with an open CallRinging
    answered_by: str | None = None
    talked: list[str] = field(default_factory=list)
    first_ring_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_cause: str = ""
    cause_rank: tuple[int, int] = (9, 0)
    recording: str | None = None
    transfers: list[Transfer] = field(default_factory=list)
    abandoned: bool = False
    last_dial_status: str | None = None
    busy_cause: bool = False
    # What the link did not show (it was down): answered and/or ended at an unknown
    # time; ``start_unknown`` when no PBX time was at hand to date the first channel.
    answer_unseen: bool = False
    end_unseen: bool = False
    start_unknown: bool = False
    ring_unknown: bool = False  # agents rang, since when is not known
    reported: bool = False  # an event carried it: its end must be reported too

    def set_origin(self, ch: LiveChannel, number: str | None, name: str | None, exten: str) -> None:
        """The first party: an agent (outbound/internal) or a customer (inbound)."""
        self.origin = ch
        if ch.agent is not None:
            self.caller, self.caller_name = ch.agent, name or ""
            if not self.direction_known:
                self.direction = "outbound"
            if not self.callee_known:
                self.callee = exten
            return
        self.direction, self.direction_known = "inbound", True
        self.caller, self.caller_name, self.callee = number or "", name or "", exten
        if not self.did_from_variable:
            self.did = exten

    def add_rung(self, agent: str) -> None:
        if agent not in self.agents_rung:
            self.agents_rung.append(agent)

    def add_ringing(self, ch: LiveChannel, agent: str) -> bool:
        """Note a ringing device of ``agent``; True if the agent needs a new pop."""
        ch.ringing = True
        self.ringing.setdefault(agent, set()).add(ch.uniqueid)
        if agent in self.pops:
            return False
        self.pops[agent] = None
        return True

    def remove_ringing(self, ch: LiveChannel) -> bool:
        """The device stopped ringing; True if its agent's pop is still open but
        none of the agent's devices rings any more."""
        agent = ch.agent
        if not ch.ringing or agent is None:
            return False
        ch.ringing = False
        devices = self.ringing.get(agent)
        if devices is not None:
            devices.discard(ch.uniqueid)
            if not devices:
                del self.ringing[agent]
        return agent in self.pops and agent not in self.ringing

    def note_cause(self, ch: LiveChannel, cause: int | None, text: str | None) -> None:
        """Keep the hang-up cause of the customer's channel, else the caller's."""
        if ch.is_customer:
            rank = 0 if ch is self.origin else 1
        else:
            rank = 2 if ch is self.origin else 3
        if rank <= 2 and cause == USER_BUSY:
            self.busy_cause = True
        if (rank, ch.seq) < self.cause_rank:
            self.cause_rank = (rank, ch.seq)
            self.hangup_cause = text or ("" if cause is None else str(cause))

    def status(self) -> CallStatus:
        """In progress: ringing/talking. Ended: answered if anyone answered;
        abandoned if the caller left a queue; busy if the last dial attempt
        (or, without one, the customer's hang-up cause) said busy; else a
        missed call, or a failed one when we were calling out."""
        answered = self.answered_at is not None or self.answer_unseen
        if self.ended_at is None and not self.end_unseen:
            return "talking" if answered else "ringing"
        if answered:
            return "answered"
        if self.end_unseen:
            return "unknown"  # it may have been answered while the link was down
        if self.abandoned:
            return "abandoned"
        if self.last_dial_status == "BUSY" or (self.last_dial_status is None and self.busy_cause):
            return "busy"
        return "failed" if self.direction == "outbound" else "missed"

    def snapshot(self, now: datetime) -> CallSnapshot:
        """The call as known at ``now`` (the time of the event being handled).

        A duration whose end the link did not show is None, never counted to ``now``.
        """
        end = None if self.end_unseen else (self.ended_at or now)
        ring_from, talk_from = self.first_ring_at, self.answered_at
        ring_to = None if self.answer_unseen else (talk_from or end)
        return CallSnapshot(
            linkedid=self.linkedid,
            direction=self.direction,
            status=self.status(),
            caller=self.caller,
            caller_name=self.caller_name,
            callee=self.callee,
            did=self.did,
            queue=self.queue,
            agents_rung=tuple(self.agents_rung),
            answered_by=self.answered_by,
            started_at=self.started_at,
            answered_at=talk_from,
            ended_at=self.ended_at,
            ring_seconds=_span(ring_from, ring_to, known=not self.ring_unknown),
            talk_seconds=_span(talk_from, end, known=not self.answer_unseen),
            hangup_cause=self.hangup_cause if self.ended_at else "",
            recording=self.recording,
            transfers=tuple(self.transfers),
            talked=tuple(self.talked),
            times_uncertain=(
                self.answer_unseen or self.end_unseen or self.start_unknown or self.ring_unknown
            ),
        )


class Bridges:
    """Which channels share a bridge, and which bridges Local pairs join.

    A Local channel pair is one wire: ``;1`` in one bridge (or dialling) and
    ``;2`` in another. Parties of a bridge are the non-Local channels reached
    through such pairs, so a customer bridged with ``Local/103@...;1`` talks to
    103 bridged with ``;2``.
    """

    def __init__(self) -> None:
        self._members: dict[str, set[LiveChannel]] = {}
        self._pairs: dict[str, list[LiveChannel]] = {}

    def ids(self) -> list[str]:
        return list(self._members)

    def add_local(self, ch: LiveChannel) -> None:
        if ch.local_pair is not None:
            self._pairs.setdefault(ch.local_pair, []).append(ch)

    def forget(self, ch: LiveChannel) -> None:
        """The channel hung up."""
        self.leave(ch)
        halves = self._pairs.get(ch.local_pair or "")
        if halves is not None and ch in halves:
            halves.remove(ch)
            if not halves:
                del self._pairs[ch.local_pair or ""]

    def join(self, ch: LiveChannel, bridge: str) -> None:
        if ch.bridge != bridge:
            self.leave(ch)
            ch.bridge = bridge
            self._members.setdefault(bridge, set()).add(ch)

    def leave(self, ch: LiveChannel) -> None:
        bridge, ch.bridge = ch.bridge, None
        members = self._members.get(bridge or "")
        if members is not None:
            members.discard(ch)
            if not members:
                del self._members[bridge or ""]

    def parties(self, bridge: str) -> list[LiveChannel]:
        """Non-Local channels in the bridge or joined to it by Local pairs, oldest first."""
        seen, todo, parties = {bridge}, [bridge], []
        while todo:
            for ch in self._members.get(todo.pop(), ()):
                if ch.local_pair is None:
                    parties.append(ch)
                    continue
                for half in self._pairs.get(ch.local_pair, ()):
                    if half.bridge is not None and half.bridge not in seen:
                        seen.add(half.bridge)
                        todo.append(half.bridge)
        return sorted(parties, key=lambda ch: ch.seq)


class RecentIds:
    """A bounded set of recently forgotten ids (channels hung up, calls ended)."""

    def __init__(self, size: int) -> None:
        self._order: deque[str] = deque()
        self._keys: set[str] = set()
        self._size = size

    def add(self, key: str) -> None:
        if key in self._keys:
            return
        if len(self._order) >= self._size:
            self._keys.discard(self._order.popleft())
        self._order.append(key)
        self._keys.add(key)

    def discard(self, key: str) -> None:
        self._keys.discard(key)

    def __contains__(self, key: str) -> bool:
        return key in self._keys


def seconds(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds()))


def _span(start: datetime | None, end: datetime | None, *, known: bool) -> int | None:
    """Whole seconds from ``start`` to ``end``: 0 if it never began (no start),
    None if it began but its end (or, unless ``known``, its start) is unknown."""
    if start is None:
        return 0 if known else None
    if end is None or not known:
        return None
    return seconds(start, end)


def restored(snap: CallSnapshot) -> LiveCall:
    """A call a previous run logged as in progress, with what that run knew.

    The time its phones started ringing is not in the log: the listed channels'
    ages give it again, else ring time stays unknown.
    """
    call = LiveCall(snap.linkedid, snap.started_at)
    call.direction, call.direction_known = snap.direction, True
    call.caller, call.caller_name = snap.caller, snap.caller_name
    call.callee, call.callee_known = snap.callee, bool(snap.callee)
    call.did, call.did_from_variable = snap.did, bool(snap.did)
    call.queue = snap.queue
    call.agents_rung = list(snap.agents_rung)
    call.answered_by = snap.answered_by
    call.talked = list(snap.talked)
    call.answered_at = snap.answered_at
    call.answer_unseen = snap.answered_at is None and snap.status == "talking"
    call.ring_unknown = bool(snap.agents_rung)
    call.recording = snap.recording
    call.transfers = list(snap.transfers)
    call.has_customer = snap.direction != "internal"
    return call
