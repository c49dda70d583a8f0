"""What the web asks of the AMI link, on whichever process holds it.

Click-to-dial, the call controls, queue pauses and the live presence need the AMI
link and the state the telephony worker keeps in memory (the tracker's live calls
and channels, the queues' members). With several daemons on one PostgreSQL only
the link's owner has them, so :class:`CallDesk` runs each request through a
:class:`~crmcomms.forwarding.Forwarder`: in place on the owner, forwarded to it
from any other process (same arguments, same answer, same errors). With SQLite
(one process) it runs everything in place.

The operations, each a plain function of JSON arguments on the owner:

- ``ami.action``: one AMI action as built by the asker (:class:`ForwardedActions`,
  the dialer's link elsewhere), sent as is;
- ``call.control``: the caller's own live call (:func:`own_agents`) and one of
  :class:`CallControls`' methods on it;
- ``presence.agents``, ``presence.pause``: the caller's extensions' queue state,
  and pausing them;
- ``presence.wall``: the queues and the agents' state for the supervisor wall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crmcomms.telephony.controls import CallControls, own_agents

if TYPE_CHECKING:
    from crmcomms.forwarding import Forwarder, Handler
    from crmcomms.telephony.service import TelephonyService

#: The call controls a request may name (methods of :class:`CallControls`).
CONTROLS = frozenset(
    {"hangup", "hold", "resume", "complete_transfer", "cancel_transfer"}
    | {"blind_transfer", "attended_transfer"}
)


@dataclass(frozen=True, slots=True)
class LivePresence:
    """The PBX's queues and agents' state now (as :class:`Presence` shows them)."""

    queues: list[dict[str, Any]]
    agents: dict[str, dict[str, Any]]
    as_of: datetime | str | None

    def queues_json(self) -> list[dict[str, Any]]:
        return self.queues

    def agent_json(self, extension: str) -> dict[str, Any]:
        return self.agents[extension]

    def extensions(self) -> set[str]:
        return set(self.agents)


class ForwardedActions:
    """An AMI link for the dialer that runs each action on the link's owner."""

    def __init__(self, desk: CallDesk) -> None:
        self._desk = desk

    async def send_action(self, action: dict[str, str], timeout: float = 10) -> dict[str, str]:
        reply: dict[str, str] = await self._desk.run("ami.action", {"action": action})
        return reply


class CallDesk:
    """The telephony requests of the web, run where the AMI link is."""

    def __init__(self, service: TelephonyService, forwarder: Forwarder | None) -> None:
        self._service = service
        self._forwarder = forwarder
        self._handlers: dict[str, Handler] = {
            "ami.action": self._action,
            "call.control": self._control,
            "presence.agents": self._agents,
            "presence.pause": self._pause,
            "presence.wall": self._wall,
        }
        if forwarder is not None:
            for op, handler in self._handlers.items():
                forwarder.register(op, handler)

    async def run(self, op: str, args: Mapping[str, Any]) -> Any:
        """Run ``op`` where the AMI link is."""
        if self._forwarder is None:
            return await self._handlers[op](args)
        return await self._forwarder.call(op, args)

    async def control(
        self, name: str, linkedid: str, extensions: frozenset[str], **args: Any
    ) -> str:
        """Run the control ``name`` on the caller's own live call; Asterisk's message."""
        request = {"name": name, "linkedid": linkedid, "extensions": sorted(extensions), **args}
        message: str = await self.run("call.control", request)
        return message

    async def presence_of(self, extensions: frozenset[str]) -> list[dict[str, Any]]:
        """The queue state of each of ``extensions``."""
        agents: list[dict[str, Any]] = await self.run(
            "presence.agents", {"extensions": sorted(extensions)}
        )
        return agents

    async def pause(
        self, extensions: frozenset[str], paused: bool, queue: str | None, reason: str
    ) -> list[str]:
        """Pause or unpause the caller in ``queue`` (all when None); Asterisk's messages."""
        args = {"extensions": sorted(extensions), "paused": paused, "queue": queue}
        messages: list[str] = await self.run("presence.pause", {**args, "reason": reason})
        return messages

    async def wall(self, extensions: Sequence[str]) -> LivePresence:
        """The queues, and the state of ``extensions`` and of every agent the PBX knows."""
        live = await self.run("presence.wall", {"extensions": sorted(extensions)})
        return LivePresence(live["queues"], live["agents"], live["as_of"])

    # ------------------------------------------------------------ on the owner

    async def _action(self, args: Mapping[str, Any]) -> dict[str, str]:
        return await self._service.client.send_action(dict(args["action"]))

    async def _control(self, args: Mapping[str, Any]) -> str:
        name = args["name"]
        if name not in CONTROLS:
            raise ValueError(f"no call control {name!r}")
        extensions = frozenset(args["extensions"])
        linkedid = args["linkedid"]
        mine = own_agents(self._service.active_calls(), linkedid, extensions)
        controls = self._service.controls
        if name == "blind_transfer":
            return await controls.blind_transfer(linkedid, mine, args["to"], args["queue"])
        if name == "attended_transfer":
            return await controls.attended_transfer(linkedid, mine, args["to"])
        act = getattr(CallControls, name)
        message: str = await act(controls, linkedid, mine)
        return message

    async def _agents(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        presence = self._service.presence.presence
        return [presence.agent_json(ext) for ext in args["extensions"]]

    async def _pause(self, args: Mapping[str, Any]) -> list[str]:
        extensions = frozenset(args["extensions"])
        paused, queue, reason = args["paused"], args["queue"], args["reason"]
        return await self._service.controls.pause(extensions, paused, queue, reason)

    async def _wall(self, args: Mapping[str, Any]) -> dict[str, Any]:
        presence = self._service.presence.presence
        extensions = presence.extensions() | set(args["extensions"])
        return {
            "queues": presence.queues_json(),
            "agents": {ext: presence.agent_json(ext) for ext in sorted(extensions)},
            "as_of": presence.as_of,
        }
