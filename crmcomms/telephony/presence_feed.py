"""Feeds :class:`~crmcomms.telephony.presence.Presence` from the AMI stream and pushes
what changed (``presence.changed``) to the agents concerned and the supervisors.

The telephony consumer hands every AMI message and every call event here, in
stream order; after a (re)login the ``QueueStatus`` answer joins the stream at
its place (:class:`QueueSnapshot`) and replaces the queue state. After each
batch :meth:`PresenceFeed.publish` sends, at most once per batch:

- to each agent whose state or queue memberships changed, ``{"agent": {...}}``
  (:meth:`Presence.agent_json`);
- to supervisors, when queues changed, ``{"queues": [...], "as_of": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmcomms.push import Audience, Publisher
from crmcomms.telephony.ami_events import AmiEvent
from crmcomms.telephony.calls import CallEvent
from crmcomms.telephony.events import MalformedEvent, Message, translate
from crmcomms.telephony.presence import Presence

log = logging.getLogger(__name__)
EVENT = "presence.changed"


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The items of a ``QueueStatus`` answer; ``pbx_now`` the PBX's time then, if known."""

    items: Sequence[dict[str, str]]
    pbx_now: datetime | None


def typed(items: Sequence[Message], answer: str = "QueueStatus") -> list[AmiEvent]:
    """The items of a list answer as typed events; malformed ones are logged and skipped."""
    out = []
    for item in items:
        try:
            event = translate(item)
        except MalformedEvent as exc:
            log.warning("skipping an item of a %s answer: %s", answer, exc)
            continue
        if event is not None:
            out.append(event)
    return out


class PresenceFeed:
    """Presence kept up to date from the stream; changes pushed per batch."""

    def __init__(self, presence: Presence, hub: Publisher) -> None:
        self.presence = presence
        self._hub = hub
        self._agents: dict[str, dict[str, Any]] = {}
        self._queues: list[dict[str, Any]] = []
        self._published = presence.version

    def feed_message(self, msg: Message) -> None:
        """One AMI event of the stream: only queue events matter here."""
        if not msg.get("Event", "").startswith("Queue"):
            return
        try:
            event = translate(msg)
        except MalformedEvent:
            return  # counted by the tracker
        if event is not None:
            self.presence.feed(event)

    def feed_snapshot(self, snapshot: QueueSnapshot) -> None:
        self.presence.load_status(typed(snapshot.items), snapshot.pbx_now)

    def feed_calls(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            self.presence.feed_call(event)

    def publish(self) -> None:
        """Push what changed since the last call (nothing if nothing did)."""
        presence = self.presence
        if presence.version == self._published:
            return
        self._published = presence.version
        for extension in sorted(presence.extensions() | set(self._agents)):
            now = presence.agent_json(extension)
            if self._agents.get(extension) != now:
                self._agents[extension] = now
                self._hub.publish(EVENT, {"agent": now}, Audience.of(extension))
        queues = presence.queues_json()
        if queues != self._queues:
            self._queues = queues
            as_of = presence.as_of.isoformat() if presence.as_of else None
            self._hub.publish(EVENT, {"queues": queues, "as_of": as_of}, Audience())
