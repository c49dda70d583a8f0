"""Feeds :class:`~crmcomms.telephony.presence.Presence` from the AMI stream and pushes
what changed (``presence.changed``) to the agents concerned and the supervisors.

The telephony consumer hands every typed AMI event and every call event here, in
stream order; after a (re)login the ``QueueStatus`` answer joins the stream at
its place (:class:`QueueSnapshot`) and replaces the queue state. After each
batch :meth:`PresenceFeed.publish` sends, at most once per batch:

- to each agent whose state or queue memberships changed, ``{"agent": {...}}``
  (:meth:`Presence.agent_json`);
- to supervisors, when queues changed, ``{"queues": [...], "as_of": ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmcomms.pbx_events import (
    AmiEvent,
    QueueCallerAbandon,
    QueueCallerJoin,
    QueueCallerLeave,
    QueueEntry,
    QueueMember,
    QueueParams,
)
from crmcomms.push import Audience, Publisher
from crmcomms.telephony.calls import CallEvent
from crmcomms.telephony.presence import Presence

EVENT = "presence.changed"
#: The events of the stream presence reads (the others would only move its ``as_of``).
QUEUE_EVENTS = (
    QueueMember,
    QueueCallerJoin,
    QueueCallerLeave,
    QueueCallerAbandon,
    QueueEntry,
    QueueParams,
)


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The items of a ``QueueStatus`` answer, typed; ``pbx_now`` the PBX's time then, if known."""

    items: Sequence[AmiEvent]
    pbx_now: datetime | None


class PresenceFeed:
    """Presence kept up to date from the stream; changes pushed per batch."""

    def __init__(self, presence: Presence, hub: Publisher) -> None:
        self.presence = presence
        self._hub = hub
        self._agents: dict[str, dict[str, Any]] = {}
        self._queues: list[dict[str, Any]] = []
        self._queues_version = -1
        self._published = presence.version

    def feed_event(self, event: AmiEvent) -> None:
        """One event of the stream: only queue events matter here."""
        if isinstance(event, QUEUE_EVENTS):
            self.presence.feed(event)

    def feed_snapshot(self, snapshot: QueueSnapshot) -> None:
        self.presence.load_status(snapshot.items, snapshot.pbx_now)

    def feed_calls(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            self.presence.feed_call(event)

    def publish(self) -> None:
        """Push what changed since the last call (nothing if nothing did)."""
        presence = self.presence
        if presence.version == self._published:
            return
        self._published = presence.version
        touched = presence.take_touched()
        if touched is None:  # reloaded: every agent's view may have changed
            touched = presence.extensions() | set(self._agents)
        for extension in sorted(touched):
            now = presence.agent_json(extension)
            if self._agents.get(extension) != now:
                self._agents[extension] = now
                self._hub.publish(EVENT, {"agent": now}, Audience.of(extension))
        if presence.queues_version == self._queues_version:
            return
        self._queues_version = presence.queues_version
        queues = presence.queues_json()
        if queues != self._queues:
            self._queues = queues
            as_of = presence.as_of.isoformat() if presence.as_of else None
            self._hub.publish(EVENT, {"queues": queues, "as_of": as_of}, Audience())
