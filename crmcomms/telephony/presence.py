"""Queue and agent presence from the AMI: sans-I/O, no clock of its own.

:class:`Presence` is fed the typed AMI events (queue members, callers joining
and leaving queues, the items of a ``QueueStatus`` answer) and the call
tracker's call events, and answers what the wall and the agent page show:

- per queue, the callers waiting now and since when (the ``Timestamp`` of their
  ``QueueCallerJoin``, or the PBX's time of a ``QueueStatus`` answer minus the
  ``Wait`` it reports), and each member's state;
- per agent extension, whether it is logged in to each of its queues, paused
  (with the reason) and its state: ``ringing`` / ``talking`` (from the call
  events: a pop open, a call answered and not ended), ``paused`` (in every
  queue it is a member of), ``offline`` (its device unavailable or invalid, or
  not a member of any queue), else ``idle``.

Members are named by their interface (``PJSIP/101``, ``Local/101@from-queue/n``)
and mapped to an extension with the agent channel patterns; a member that is
no agent of ours (an outside number in a queue) keeps its interface.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from core.times import json_time
from crmcomms.pbx_events import (
    AmiEvent,
    QueueCallerAbandon,
    QueueCallerJoin,
    QueueCallerLeave,
    QueueEntry,
    QueueMember,
)
from crmcomms.telephony.calls import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRinging,
    CallRingStopped,
    CallTransferred,
)

AgentState = Literal["ringing", "talking", "paused", "idle", "offline"]
#: Asterisk device states (``Status`` of queue member events) that mean "cannot take calls".
OFFLINE_DEVICE = frozenset({4, 5})  # AST_DEVICE_INVALID, AST_DEVICE_UNAVAILABLE
DEVICE_STATES = {
    0: "unknown",
    1: "not_in_use",
    2: "in_use",
    3: "busy",
    4: "invalid",
    5: "unavailable",
    6: "ringing",
    7: "ring_in_use",
    8: "on_hold",
}


def interface_matcher(patterns: Sequence[str]) -> Callable[[str], str | None]:
    """The agent extension of a queue member interface (``PJSIP/101`` for the pattern
    ``PJSIP/{ext}-``, ``Local/101@ctx/n``), or None."""
    regexes = [re.compile(re.escape(p.partition("{ext}")[0]) + r"(?P<ext>\d+)$") for p in patterns]
    regexes.append(re.compile(r"Local/(?P<ext>\d+)@"))

    def extension_of(interface: str) -> str | None:
        for regex in regexes:
            match = regex.match(interface)
            if match is not None:
                return match.group("ext")
        return None

    return extension_of


@dataclass(frozen=True, slots=True)
class Member:
    """One member of one queue, as the PBX last reported it."""

    queue: str
    interface: str
    extension: str | None
    name: str | None
    status: int | None
    paused: bool
    paused_reason: str | None
    in_call: bool
    login_time: datetime | None

    @property
    def offline(self) -> bool:
        """Its device cannot take calls (unavailable or invalid)."""
        return self.status in OFFLINE_DEVICE

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "interface": self.interface,
            "extension": self.extension,
            "name": self.name,
            "device": DEVICE_STATES.get(self.status or 0, "unknown"),
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "in_call": self.in_call,
            "logged_in_at": json_time(self.login_time),
        }


class Presence:
    """Queue members, waiting callers and agents' call activity; see the module docstring."""

    def __init__(self, agent_patterns: Sequence[str] = ("PJSIP/{ext}-", "SIP/{ext}-")) -> None:
        self._extension_of = interface_matcher(agent_patterns)
        self._members: dict[tuple[str, str], Member] = {}  # (queue, interface) -> member
        # the same members by extension, and each member's JSON, kept with _members: the
        # page's and the wall's views are read after every batch and must not scan them all
        self._by_extension: dict[str | None, dict[tuple[str, str], Member]] = {}
        self._json: dict[tuple[str, str], dict[str, Any]] = {}
        self._queue_json: dict[str, list[dict[str, Any]]] = {}  # queue -> members' JSON
        self._waiting: dict[str, dict[str, datetime | None]] = {}  # queue -> uniqueid -> since
        self._ringing: dict[str, set[str]] = {}  # extension -> linkedids ringing it
        self._talking: dict[str, set[str]] = {}  # extension -> linkedids it is connected on
        # extension -> linkedids it holds (crmcomms.telephony.controls); None: not known yet
        self._held: dict[str, set[str]] | None = None
        self._queues: set[str] = set()
        self.as_of: datetime | None = None  # the PBX time of the last event with one
        self.version = 0  # bumped on every change
        self.queues_version = 0  # bumped when queues, members or waiting callers change
        #: extensions whose agent view may have changed since :meth:`take_touched`;
        #: None: all of them (after a QueueStatus reload)
        self._touched: set[str] | None = set()

    # ------------------------------------------------------------ input

    def feed(self, event: AmiEvent) -> bool:
        """Apply one AMI event; whether anything shown changed."""
        if event.timestamp is not None:
            self.as_of = event.timestamp
        changed = self._apply(event)
        if changed:
            self.version += 1
            self.queues_version += 1
        return changed

    def _apply(self, event: AmiEvent) -> bool:
        match event:
            case QueueMember():
                return self._member(event)
            case QueueCallerJoin():
                self._queues.add(event.queue)
                self._waiting.setdefault(event.queue, {})[event.channel.uniqueid] = event.timestamp
                return True
            case QueueCallerLeave() | QueueCallerAbandon():
                return self._waiting.get(event.queue, {}).pop(event.channel.uniqueid, 0) != 0
            case _:
                return False

    def load_status(self, items: Iterable[AmiEvent], pbx_now: datetime | None) -> None:
        """Replace the queue state with a ``QueueStatus`` answer (after every login):
        members and waiting callers not listed are gone."""
        self._members.clear()
        self._by_extension.clear()
        self._json.clear()
        self._queue_json.clear()
        self._waiting.clear()
        self._touched = None
        if pbx_now is not None:
            self.as_of = pbx_now
        for item in items:
            if isinstance(item, QueueMember):
                self._member(item)
            elif isinstance(item, QueueEntry):
                since = pbx_now - item.wait if pbx_now and item.wait is not None else None
                self._queues.add(item.queue)
                self._waiting.setdefault(item.queue, {})[item.uniqueid] = since
            elif hasattr(item, "queue"):
                self._queues.add(item.queue)  # QueueParams: a queue without members
        self.version += 1
        self.queues_version += 1

    def feed_call(self, event: CallEvent) -> bool:
        """Follow who rings and who talks from the tracker's call events."""
        lid = event.call.linkedid
        touched = self._touched
        if touched is not None:
            touched.update(
                a for a in (getattr(event, "agent", None), *_transfer_parties(event)) if a
            )
        match event:
            case CallRinging(agent=agent):
                self._ringing.setdefault(agent, set()).add(lid)
            case CallRingStopped(agent=agent):
                self._discard(self._ringing, agent, lid)
            case CallAnswered(agent=agent):
                self._discard(self._ringing, agent, lid)
                self._talking.setdefault(agent, set()).add(lid)
            case CallTransferred(transfer=transfer):
                self._discard(self._talking, transfer.from_ext, lid)
            case CallEnded():
                for calls in (self._ringing, self._talking, self._held or {}):
                    for agent in [a for a, ids in calls.items() if lid in ids]:
                        self._discard(calls, agent, lid)
                        if touched is not None:
                            touched.add(agent)
        self.version += 1
        return True

    def _member(self, event: QueueMember) -> bool:
        key = (event.queue, event.interface)
        self._queues.add(event.queue)
        if event.removed:
            gone = self._members.get(key)
            if gone is not None:
                self._forget(key, gone)
            return gone is not None
        extension = self._extension_of(event.interface)
        if extension is None and event.state_interface:
            extension = self._extension_of(event.state_interface)
        member = Member(
            event.queue,
            event.interface,
            extension,
            event.name,
            event.status,
            event.paused,
            event.paused_reason if event.paused else None,
            event.in_call,
            event.login_time,
        )
        old = self._members.get(key)
        if old == member:
            return False
        if old is not None:
            self._forget(key, old)
        self._members[key] = member
        self._by_extension.setdefault(extension, {})[key] = member
        self._json[key] = member.to_json()
        self._queue_json.pop(event.queue, None)
        if self._touched is not None and extension:
            self._touched.add(extension)
        return True

    def _forget(self, key: tuple[str, str], member: Member) -> None:
        del self._members[key]
        self._json.pop(key, None)
        self._queue_json.pop(member.queue, None)
        mine = self._by_extension.get(member.extension)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._by_extension[member.extension]
        if self._touched is not None and member.extension:
            self._touched.add(member.extension)

    @staticmethod
    def _discard(calls: dict[str, set[str]], agent: str, linkedid: str) -> None:
        ids = calls.get(agent)
        if ids is not None:
            ids.discard(linkedid)
            if not ids:
                del calls[agent]

    # ------------------------------------------------------------ output

    def members_of(self, extension: str) -> list[Member]:
        """The queue memberships of one agent extension."""
        return list(self._by_extension.get(extension, {}).values())

    def agent_state(self, extension: str) -> AgentState:
        """ringing > talking > paused > offline > idle; see the module docstring."""
        if self._ringing.get(extension):
            return "ringing"
        if self._talking.get(extension):
            return "talking"
        members = self.members_of(extension)
        if not members or all(m.offline for m in members):
            return "offline"
        if all(m.paused for m in members):
            return "paused"
        return "idle"

    def agent_json(self, extension: str) -> dict[str, Any]:
        """What the agent page shows of one extension: state and queue memberships."""
        return {
            "extension": extension,
            "state": self.agent_state(extension),
            "queues": [self._json[key] for key in self._by_extension.get(extension, {})],
            "held": self.held_by(extension),
        }

    def held_by(self, extension: str) -> list[str] | None:
        """The Linkedids of the calls ``extension`` holds; None before the PBX said."""
        return None if self._held is None else sorted(self._held.get(extension, ()))

    def set_held(self, held: dict[str, set[str]]) -> None:
        """Which calls each extension holds, as the PBX's channels say (controls)."""
        known = {ext: set(ids) for ext, ids in held.items() if ids}
        if known != self._held:
            if self._held is None:  # every agent's "held" goes from unknown to known
                self._touched = None
            elif self._touched is not None:
                self._touched.update(known, self._held)
            self._held = known
            self.version += 1

    def extensions(self) -> set[str]:
        """Every agent extension seen in a queue or on a call."""
        found = {extension for extension in self._by_extension if extension}
        return found | set(self._ringing) | set(self._talking)

    def take_touched(self) -> set[str] | None:
        """The extensions whose agent view may have changed since the last call (None:
        all of them), and start counting anew."""
        touched, self._touched = self._touched, set()
        return touched

    def queues_json(self) -> list[dict[str, Any]]:
        """Per queue: callers waiting, since when the longest waits, members."""
        out = []
        for queue in sorted(self._queues):
            waiting = self._waiting.get(queue, {})
            known = [since for since in waiting.values() if since is not None]
            members = self.queue_members_json(queue) or []
            out.append(
                {
                    "queue": queue,
                    "waiting": len(waiting),
                    "longest_waiting_since": json_time(min(known)) if known else None,
                    "members": members,
                }
            )
        return out

    def queue_members_json(self, queue: str) -> list[dict[str, Any]] | None:
        """The members of ``queue`` as the PBX last reported them (paused, reason,
        device); None for a queue the PBX has not told us about."""
        if queue not in self._queues:
            return None
        found = self._queue_json.get(queue)
        if found is None:
            found = [self._json[key] for key, m in self._members.items() if m.queue == queue]
            self._queue_json[queue] = found
        return found

    def member_in(self, extension: str, queue: str) -> Member | None:
        """The membership of ``extension`` in ``queue``, if any."""
        return next((m for m in self.members_of(extension) if m.queue == queue), None)


def _transfer_parties(event: CallEvent) -> tuple[str, ...]:
    if isinstance(event, CallTransferred):
        return (event.transfer.from_ext, event.transfer.to_ext)
    return ()
