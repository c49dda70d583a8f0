"""CDR rows -> calls. Pure: no I/O, no clock; every time comes from a row.

One call is one ``linkedid``; each of its rows is one party A -> party B leg,
ordered here by ``start`` then ``sequence``. Traps of Asterisk's CDR, seen in
the recorded outages:

- Queue calls are answered by the dialplan (``Answer()`` before ``Queue()``):
  the caller has one row per rung agent, every row's ``answer`` is the time the
  row was created (the channel was already up), and the ringall loser's row is
  ``NO ANSWER`` *with* an answer time. So ``disposition`` says who answered,
  never ``answer``; the agent's pickup time is not in the CDR at all.
- A row created while party A is already up gets ``answer == start``. Only a
  ``Dial`` row whose ``answer`` is later than its ``start`` dates a pickup;
  otherwise ``answered_at`` stays None and the call is ``times_uncertain``.
- Local channels (``Local/103@ctx-00000000;1`` and ``;2``) are one wire: the
  agent behind ``;1`` is found on the rows of ``;2`` (blonde/attended transfers
  via ``Atxfer``, FreePBX queue members and ring groups).
- One linkedid can have many rows (a blonde transfer has 5): the call starts at
  the earliest ``start`` and ends at the latest ``end``.
- CDR has no hang-up cause (``hangup_cause`` is ``""``) and 1 s resolution.

Outcome rules (the tracker's): answered when an agent's leg is ``ANSWERED``
(outbound: the dialled party's); else abandoned when the caller's last row
ended in ``Queue`` (they hung up while queued; a queue timeout that goes on
to voicemail ends in another application and is missed); else busy when the
last dial attempt was ``BUSY``; else missed (inbound, internal) or failed
(outbound).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from crmcomms.cdr.rows import CdrRow
from crmcomms.telephony.calls import (
    CallSnapshot,
    CallStatus,
    Direction,
    Transfer,
    TransferKind,
)

AgentOf = Callable[[str], str | None]

_ANSWERED = "ANSWERED"
_DIAL_APPS = frozenset({"Dial"})
_CLID = re.compile(r'^\s*"?(?P<name>.*?)"?\s*<(?P<num>[^>]*)>\s*$')
_LOCAL_DEPTH = 4  # Local channels chained into Local channels, at most


def calls_from_cdr(rows: Iterable[CdrRow], agent_of: AgentOf) -> list[CallSnapshot]:
    """One backfilled call per ``linkedid`` among ``rows``, ordered by start."""
    groups: dict[str, list[CdrRow]] = {}
    for row in rows:
        groups.setdefault(row.linkedid, []).append(row)
    calls = [call_from_rows(group, agent_of) for group in groups.values()]
    return sorted(calls, key=lambda call: (call.started_at, call.linkedid))


def call_from_rows(rows: Iterable[CdrRow], agent_of: AgentOf) -> CallSnapshot:
    """The call told by the rows of one ``linkedid`` (any order, at least one row)."""
    legs = _Legs(sorted(rows, key=lambda row: (row.start, row.sequence)), agent_of)
    origin_agent = agent_of(legs.origin.channel)
    direction = legs.direction(origin_agent)
    pickup = legs.pickup_row()
    answered = pickup is not None
    answered_at = _pickup_time(legs, pickup)
    started_at = min(row.start for row in legs.rows)
    ended_at = max(row.end for row in legs.rows)
    ring_from = legs.first_ring()
    return CallSnapshot(
        linkedid=legs.origin.linkedid,
        direction=direction,
        status=legs.status(direction, answered),
        caller=origin_agent or legs.origin.src,
        caller_name=legs.caller_name(),
        callee=_number(legs.origin.dst),
        did=_number(legs.origin.dst) if direction == "inbound" else "",
        queue=legs.queue(),
        agents_rung=legs.agents_rung(origin_agent),
        answered_by=None if direction == "outbound" or pickup is None else legs.agent_on(pickup),
        started_at=started_at,
        answered_at=answered_at,
        ended_at=ended_at,
        ring_seconds=_ring_seconds(ring_from, answered, answered_at, ended_at),
        talk_seconds=(0 if not answered else _seconds(answered_at, ended_at)),
        hangup_cause="",
        recording=None,
        transfers=legs.transfers(),
        talked=legs.talked(origin_agent, direction),
        times_uncertain=answered and answered_at is None,
        backfilled=True,
    )


@dataclass(frozen=True, slots=True)
class _Legs:
    """The rows of one call, sorted, and what can be read off them."""

    rows: list[CdrRow]
    agent_of: AgentOf

    @property
    def origin(self) -> CdrRow:
        """The first row whose party A is not a Local channel (the caller's)."""
        return next((r for r in self.rows if not _is_local(r.channel)), self.rows[0])

    @property
    def own(self) -> list[CdrRow]:
        """The caller's rows (party A is the origin's channel) that dial someone."""
        channel = self.origin.channel
        return [r for r in self.rows if r.channel == channel]

    def direction(self, origin_agent: str | None) -> Direction:
        if origin_agent is None:
            return "inbound"
        first_dial = next((r for r in self.own if r.dstchannel), None)
        if first_dial is not None and self.agents_behind(first_dial.dstchannel):
            return "internal"
        return "outbound"

    def agents_behind(self, channel: str, answered: bool = False, depth: int = 0) -> list[str]:
        """The agents reached through ``channel``: itself, or through a Local pair."""
        agent = self.agent_of(channel)
        if agent is not None:
            return [agent]
        if not _is_local(channel) or depth > _LOCAL_DEPTH:
            return []
        pair, _, _ = channel.rpartition(";")
        found: list[str] = []
        for row in self.rows:
            if row.channel.startswith(pair + ";") and row.channel != channel and row.dstchannel:
                if answered and row.disposition != _ANSWERED:
                    continue
                for ext in self.agents_behind(row.dstchannel, answered, depth + 1):
                    if ext not in found:
                        found.append(ext)
        return found

    def agent_on(self, row: CdrRow) -> str | None:
        """The agent who answered ``row``'s party B (through Local channels)."""
        return next(iter(self.agents_behind(row.dstchannel, answered=True)), None)

    def pickup_row(self) -> CdrRow | None:
        """The caller's first answered leg: to an agent (inbound), to anyone (agent calling)."""
        agent_calling = self.agent_of(self.origin.channel) is not None
        for row in self.own:
            if row.dstchannel and row.disposition == _ANSWERED:
                if agent_calling or self.agent_on(row) is not None:
                    return row
        return None

    def status(self, direction: Direction, answered: bool) -> CallStatus:
        if answered:
            return "answered"
        own = self.own
        last = max(own, key=lambda r: (r.end, r.sequence)) if own else None
        if self.queue() and last is not None and last.lastapp == "Queue":
            return "abandoned"
        dials = [r for r in own if r.dstchannel]
        if dials and dials[-1].disposition == "BUSY":
            return "busy"
        return "failed" if direction == "outbound" else "missed"

    def queue(self) -> str:
        row = next((r for r in self.own if r.lastapp == "Queue"), None)
        return "" if row is None else row.lastdata.partition(",")[0]

    def caller_name(self) -> str:
        """The name presented to the first agent rung (after the dialplan set it)."""
        row = next((r for r in self.own if self.agents_behind(r.dstchannel)), self.origin)
        match = _CLID.match(row.clid)
        if match is None:
            return "" if row.clid == row.src else row.clid
        return match.group("name")

    def agents_rung(self, origin_agent: str | None) -> tuple[str, ...]:
        rung: list[str] = []
        for row in self.rows:
            for ext in self.agents_behind(row.dstchannel) if row.dstchannel else ():
                if ext != origin_agent and ext not in rung:
                    rung.append(ext)
        return tuple(rung)

    def first_ring(self) -> datetime | None:
        """When the first agent's phone (outbound: the far end) was dialled."""
        outbound_origin = self.agent_of(self.origin.channel) is not None
        for row in self.rows:
            if row.dstchannel and (outbound_origin or self.agents_behind(row.dstchannel)):
                return row.start
        return None

    def holders(self) -> list[tuple[CdrRow, list[str]]]:
        """The caller's legs to agents, in order, with the agents behind each."""
        return [(r, self.agents_behind(r.dstchannel)) for r in self.own if r.dstchannel]

    def transfers(self) -> tuple[Transfer, ...]:
        """A leg to another agent starting when an answered agent's leg ended."""
        found: list[Transfer] = []
        holder: tuple[CdrRow, str] | None = None
        for row, agents in self.holders():
            target = agents[0] if agents else None
            if holder is not None and target and target != holder[1]:
                if row.start >= holder[0].end:
                    transfer = Transfer(holder[1], target, self._kind(holder[0], target))
                    if transfer not in found:
                        found.append(transfer)
            answered_agent = self.agent_on(row) if row.disposition == _ANSWERED else None
            if answered_agent is not None:
                holder = (row, answered_agent)
        return tuple(found)

    def _kind(self, held: CdrRow, target: str) -> TransferKind:
        """Attended when the transferring agent's own channel dialled the target."""
        for row in self.rows:
            if row.channel == held.dstchannel and target in self.agents_behind(row.dstchannel):
                return "attended"
        return "blind"

    def talked(self, origin_agent: str | None, direction: Direction) -> tuple[str, ...]:
        """The agents connected on the call, in order (the calling agent first)."""
        if self.pickup_row() is None:
            return ()
        agents = [] if origin_agent is None else [origin_agent]
        if direction == "outbound":
            return tuple(agents)
        for row in self.own:
            ext = self.agent_on(row) if row.dstchannel and row.disposition == _ANSWERED else None
            if ext is not None and ext not in agents:
                agents.append(ext)
        return tuple(agents)


def _pickup_time(legs: _Legs, pickup: CdrRow | None) -> datetime | None:
    """When the answering party picked up, if a ``Dial`` row says so; else None.

    A queue leg's ``answer`` is the dialplan's Answer(); a leg created while the
    caller was already up has ``answer == start``: neither dates the pickup.
    Through a Local pair, the leg that dialled the agent's phone is the one read.
    """
    if pickup is None or legs.queue():
        return None
    row = pickup
    for _ in range(_LOCAL_DEPTH):
        if not _is_local(row.dstchannel):
            break
        pair = row.dstchannel.rpartition(";")[0] + ";"
        onward = [
            r
            for r in legs.rows
            if r.channel.startswith(pair)
            and r.channel != row.dstchannel
            and r.disposition == _ANSWERED
            and r.dstchannel
        ]
        if not onward:
            return None
        row = onward[0]
    if row.lastapp not in _DIAL_APPS or row.answer is None or row.answer <= row.start:
        return None
    return row.answer


def _ring_seconds(
    ring_from: datetime | None, answered: bool, answered_at: datetime | None, ended_at: datetime
) -> int | None:
    if ring_from is None:
        return 0
    if answered:
        return _seconds(ring_from, answered_at)
    return _seconds(ring_from, ended_at)


def _seconds(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds()))


def _is_local(channel: str) -> bool:
    return channel.startswith("Local/")


def _number(exten: str) -> str:
    """A dialplan extension as a dialled number ('s' is the start extension)."""
    return "" if exten == "s" else exten
