"""Call controls from the agent page over AMI: hang up, transfer, hold, queue pause.

Every control acts on the *agent's own channel* of a live call (the tracker
knows the call's channels); who may act is decided before, by :func:`own_agents`
with :func:`core.calls.agents_of`, on the process that holds the AMI link
(:mod:`crmcomms.telephony.desk` forwards a request made elsewhere).
The actions are Asterisk's documented AMI actions, built by the pure functions
below (tests compare them field by field with the documentation):

- **Hang up**: ``Hangup`` of the agent's channel (``Cause: 16``, normal
  clearing). On a two-party call that ends the call; in a conference or a
  consultation only the agent leaves.
- **Blind transfer**: ``BlindTransfer`` of the agent's channel: Asterisk sends
  the party bridged with it to ``Exten`` in ``Context`` and the agent drops out.
  To a queue: ``Exten`` is the queue's name in ``ami.queue_context``, whose
  dialplan runs ``Queue(${EXTEN})`` (README).
- **Attended transfer**: ``Atxfer`` of the agent's channel (the customer is held,
  the agent talks to the target); **complete** by hanging up the agent's
  channel (Asterisk then bridges customer and target); **cancel** with
  ``CancelAtxfer`` (Asterisk 13.18+/14.7+/15.1+; it uses the ``atxferabort``
  feature code, which must stay configured in features.conf).
- **Hold**: Asterisk has no AMI "Hold" action (a phone holds with a re-INVITE;
  ARI has ``/channels/{id}/hold``, AMI does not). crmcomms holds by ``Redirect``:
  the party bridged with the agent goes to ``ami.hold_context`` extension
  ``s`` (music on hold), the agent's channel, as the ``ExtraChannel``, to
  extension ``agent`` of the same context (silence, so the phone stays up);
  **resume** joins both again with the ``Bridge`` action. The dialplan lines
  are in the README.
  Which calls are held comes from the PBX: each channel list Asterisk gives
  (``CoreShowChannels``, at every login: after a restart, a reconnect, a
  failover to another daemon) names the channels in ``ami.hold_context``, the
  peer at ``s`` and the agent at ``agent``; between two lists a hold or resume
  Asterisk accepted. Before the first list it is not known (``None``), never
  assumed; the agent page shows it from the agent's presence (``held``).
- **Queue pause**: ``QueuePause`` of each interface the agent is a member as,
  with ``Reason``; the pause shows once Asterisk's ``QueueMemberPause`` event
  says so (nothing is assumed before).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from core.calls import agents_of
from core.errors import Conflict, InvalidInput
from crmcomms.config import AmiSettings
from crmcomms.pbx_events import CoreShowChannel
from crmcomms.telephony.calls import CallSnapshot
from crmcomms.telephony.dialer import ActionSender, send_action
from crmcomms.telephony.presence import Presence

NORMAL_CLEARING = "16"
_EXTENSION = re.compile(r"[0-9*#+]{1,32}")
_QUEUE = re.compile(r"[A-Za-z0-9_.-]{1,80}")
_REASON_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")

Legs = Callable[[str], Sequence[tuple[str, str | None, str | None]]]
"""The live channels of a call by Linkedid: (name, agent extension, bridge id)."""


@dataclass(frozen=True, slots=True)
class Leg:
    """One live channel of a call."""

    name: str
    agent: str | None
    bridge: str | None


def own_agents(
    active: Sequence[CallSnapshot], linkedid: str, extensions: frozenset[str]
) -> frozenset[str]:
    """The caller's ``extensions`` among the agents of the live call ``linkedid``:
    409 if it is not in progress, 403 if it is not the caller's call."""
    live = next((call for call in active if call.linkedid == linkedid), None)
    if live is None:
        raise Conflict("the call is not in progress")
    mine = agents_of(live) & extensions
    if not mine:
        raise web.HTTPForbidden(reason="not your call")
    return mine


# ---------------------------------------------------------------- the actions


def hangup_action(channel: str) -> dict[str, str]:
    """AMI ``Hangup``: Channel, Cause."""
    return {"Action": "Hangup", "Channel": channel, "Cause": NORMAL_CLEARING}


def blind_transfer_action(channel: str, context: str, exten: str) -> dict[str, str]:
    """AMI ``BlindTransfer``: Channel (the transferer), Context, Exten."""
    return {"Action": "BlindTransfer", "Channel": channel, "Context": context, "Exten": exten}


def atxfer_action(channel: str, context: str, exten: str) -> dict[str, str]:
    """AMI ``Atxfer``: Channel (the transferer), Exten, Context."""
    return {"Action": "Atxfer", "Channel": channel, "Exten": exten, "Context": context}


def cancel_atxfer_action(channel: str) -> dict[str, str]:
    """AMI ``CancelAtxfer``: Channel (the transferer)."""
    return {"Action": "CancelAtxfer", "Channel": channel}


def hold_action(peer: str, agent_channel: str, context: str) -> dict[str, str]:
    """AMI ``Redirect`` of the agent's peer to music on hold and of the agent's channel
    (``ExtraChannel``) to silence, both in ``context``."""
    return {
        "Action": "Redirect",
        "Channel": peer,
        "ExtraChannel": agent_channel,
        "Exten": "s",
        "ExtraExten": "agent",
        "Context": context,
        "ExtraContext": context,
        "Priority": "1",
        "ExtraPriority": "1",
    }


def resume_action(agent_channel: str, peer: str) -> dict[str, str]:
    """AMI ``Bridge`` of the agent's channel with the held party, without a tone."""
    return {"Action": "Bridge", "Channel1": agent_channel, "Channel2": peer, "Tone": "no"}


def queue_pause_action(
    interface: str, paused: bool, queue: str | None = None, reason: str = ""
) -> dict[str, str]:
    """AMI ``QueuePause``: Interface, Paused, Queue (all queues when absent), Reason."""
    action = {"Action": "QueuePause", "Interface": interface, "Paused": _bool(paused)}
    if queue:
        action["Queue"] = queue
    if reason:
        action["Reason"] = reason
    return action


def queue_status_action() -> dict[str, str]:
    """AMI ``QueueStatus`` of every queue and member (a list action)."""
    return {"Action": "QueueStatus"}


def _bool(value: bool) -> str:
    return "true" if value else "false"


def clean_reason(reason: str) -> str:
    """A pause reason as one header value (no line breaks or control characters)."""
    return " ".join(_REASON_UNSAFE.sub(" ", reason).split())[:80]


# ---------------------------------------------------------------- the service


class CallControls:
    """Sends call-control and queue-pause actions for the agent's own channels."""

    def __init__(
        self, ami: ActionSender, settings: AmiSettings, legs: Legs, presence: Presence
    ) -> None:
        self._ami = ami
        self._settings = settings
        self._legs = legs
        self._presence = presence
        # linkedid -> (agent channel, peer); None until the PBX's first channel list
        self._held: dict[str, tuple[str, str]] | None = None

    def legs(self, linkedid: str) -> list[Leg]:
        """The live channels of a call."""
        return [Leg(*leg) for leg in self._legs(linkedid)]

    def own_leg(self, linkedid: str, extensions: frozenset[str]) -> Leg:
        """The agent's channel in the call: one in a conversation first; 409 if none."""
        mine = [leg for leg in self.legs(linkedid) if leg.agent in extensions]
        if not mine:
            raise Conflict("your phone is not on this call")
        return next((leg for leg in mine if leg.bridge), mine[0])

    def peer(self, linkedid: str, leg: Leg) -> str:
        """The channel bridged with the agent's; 409 when the agent is in no conversation."""
        others = [o.name for o in self.legs(linkedid) if o.bridge and o.bridge == leg.bridge]
        others = [name for name in others if name != leg.name]
        if not leg.bridge or not others:
            raise Conflict("the call is not connected to anyone to act on")
        return others[0]

    def transfer_target(self, to: str, queue: bool) -> tuple[str, str]:
        """(context, exten) of a transfer target; 422 for a malformed one."""
        if queue:
            if not _QUEUE.fullmatch(to):
                raise InvalidInput("to", "is not a queue name")
            return self._settings.queue_context, to
        if not _EXTENSION.fullmatch(to):
            raise InvalidInput("to", "must be an extension or number (digits, *, #, +)")
        return self._settings.transfer_context or self._settings.originate_context, to

    async def hangup(self, linkedid: str, extensions: frozenset[str]) -> str:
        leg = self.own_leg(linkedid, extensions)
        message = await self.send(hangup_action(leg.name))
        self._set_held(linkedid, None)
        return message

    async def blind_transfer(
        self, linkedid: str, extensions: frozenset[str], to: str, queue: bool
    ) -> str:
        leg = self.own_leg(linkedid, extensions)
        self.peer(linkedid, leg)
        context, exten = self.transfer_target(to, queue)
        return await self.send(blind_transfer_action(leg.name, context, exten))

    async def attended_transfer(self, linkedid: str, extensions: frozenset[str], to: str) -> str:
        leg = self.own_leg(linkedid, extensions)
        self.peer(linkedid, leg)
        context, exten = self.transfer_target(to, queue=False)
        return await self.send(atxfer_action(leg.name, context, exten))

    async def complete_transfer(self, linkedid: str, extensions: frozenset[str]) -> str:
        """Completing an attended transfer is the transferer hanging up."""
        return await self.hangup(linkedid, extensions)

    async def cancel_transfer(self, linkedid: str, extensions: frozenset[str]) -> str:
        leg = self.own_leg(linkedid, extensions)
        return await self.send(cancel_atxfer_action(leg.name))

    async def hold(self, linkedid: str, extensions: frozenset[str]) -> str:
        if self.held(linkedid):
            raise Conflict("the call is on hold already")
        leg = self.own_leg(linkedid, extensions)
        peer = self.peer(linkedid, leg)
        message = await self.send(hold_action(peer, leg.name, self._settings.hold_context))
        self._set_held(linkedid, (leg.name, peer))
        return message

    async def resume(self, linkedid: str, extensions: frozenset[str]) -> str:
        if self._held is None:
            raise Conflict("whether the call is on hold is not known yet (no channel list)")
        if not self.held(linkedid):
            raise Conflict("the call is not on hold")
        self.own_leg(linkedid, extensions)
        message = await self.send(resume_action(*self._held[linkedid]))
        self._set_held(linkedid, None)
        return message

    def held(self, linkedid: str) -> bool | None:
        """Whether the call is on hold (both held channels still up); None if not known."""
        if self._held is None:
            return None
        held = self._held.get(linkedid)
        if held is not None and not set(held) <= {leg.name for leg in self.legs(linkedid)}:
            self._set_held(linkedid, None)  # a held channel hung up
            return False
        return held is not None

    def load_channels(self, channels: Sequence[CoreShowChannel]) -> None:
        """The PBX's channel list: the calls whose channels are in the hold context."""
        context = self._settings.hold_context
        parked = [c.channel for c in channels if c.channel.context == context]
        peers = {c.linkedid: c.name for c in parked if c.exten == "s"}
        agents = {c.linkedid: c.name for c in parked if c.exten == "agent"}
        self._held = {lid: (agents[lid], peer) for lid, peer in peers.items() if lid in agents}
        self._publish()

    def _set_held(self, linkedid: str, held: tuple[str, str] | None) -> None:
        if self._held is None:
            return  # not known: one action does not tell about the other calls
        if held is None:
            self._held.pop(linkedid, None)
        else:
            self._held[linkedid] = held
        self._publish()

    def _publish(self) -> None:
        """The held calls by agent extension, for the agents' presence."""
        by_extension: dict[str, set[str]] = {}
        for linkedid, (agent_channel, _) in (self._held or {}).items():
            for leg in self.legs(linkedid):
                if leg.name == agent_channel and leg.agent:
                    by_extension.setdefault(leg.agent, set()).add(linkedid)
        self._presence.set_held(by_extension)

    async def pause(
        self, extensions: frozenset[str], paused: bool, queue: str | None, reason: str
    ) -> list[str]:
        """Pause or unpause the agent in ``queue`` (all its queues when None)."""
        members = [m for ext in sorted(extensions) for m in self._presence.members_of(ext)]
        if queue is not None:
            members = [m for m in members if m.queue == queue]
        if not members:
            raise Conflict("you are not logged in to " + (queue or "any queue"))
        interfaces = dict.fromkeys(m.interface for m in members)
        reason = clean_reason(reason) if paused else ""
        return [
            await self.send(queue_pause_action(interface, paused, queue, reason))
            for interface in interfaces
        ]

    async def send(self, action: dict[str, str]) -> str:
        """Send one action (AMI failures as HTTP errors); Asterisk's message."""
        reply = await send_action(self._ami, action, f"the {action['Action']} request")
        return reply.get("Message", "")
