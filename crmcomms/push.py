"""Live push hub: numbered events fanned out to the browsers' websocket sessions.

The hub is the in-memory, single-process backend. Producers (call tracker sink,
mail worker, task service) see only :class:`Publisher`: the hub itself, or with
several processes on PostgreSQL the bus of :mod:`crmcomms.pgbus`, which numbers
events in the database and hands them to every process's hub with
:meth:`PushHub.deliver`.

Every event gets a monotonic ``seq`` (1, 2, ... per process from ``publish``,
the database's sequence through ``deliver``, which may skip numbers) and is
encoded to JSON once; the same bytes go to every client. The last
``buffer_size`` events stay in a ring buffer so a client that reconnects with
``since=<seq>`` (and the ``epoch`` of this process, sent in ``hello``) gets
exactly what it missed. A gap older than the buffer, an unknown epoch or a
``since`` from the future yields a ``reload`` instead.

``publish`` never awaits: each subscription has a bounded queue filled with
``put_nowait``; a subscription whose queue is full is marked overflowed and
dropped from the hub, and its websocket handler closes the socket (the client
then catches up with ``since``). Nothing here imports aiohttp.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import itertools
import secrets
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

EVENT_TYPES = frozenset(
    {
        "call.ringing",
        "call.answered",
        "call.ended",
        "call.ring_stopped",
        "call.transferred",
        "email.received",
        "email.sent",
        "email.failed",
        "task.created",
        "task.done",
        "call.updated",
        "presence.changed",
    }
)
_RESERVED_KEYS = frozenset({"type", "seq"})


def check_event(type: str, payload: Mapping[str, Any]) -> None:
    """Refuse an unknown type or a payload using the reserved keys (ValueError)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown push event type {type!r}")
    if not _RESERVED_KEYS.isdisjoint(payload):
        raise ValueError("payload must not contain 'type' or 'seq'")


def frame_of(seq: int, type: str, body: bytes) -> bytes:
    """The frame of an event whose payload is already the JSON object ``body``."""
    head = orjson.dumps({"type": type, "seq": seq})
    if body.strip() in (b"{}", b""):
        return head
    return head[:-1] + b"," + body.lstrip()[1:]


class Identity(Protocol):
    """Who a subscription is for; ``core.agents.AgentIdentity`` fits structurally."""

    @property
    def role(self) -> str: ...

    @property
    def extensions(self) -> frozenset[str]: ...

    @property
    def sees_everything(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Audience:
    """Who may see an event: agents of ``extensions``, or ``everyone``.

    Supervisors and admins see every event, so an empty audience means
    "supervisors only".
    """

    extensions: frozenset[str] = frozenset()
    everyone: bool = False

    @classmethod
    def of(cls, *extensions: str) -> Audience:
        """The agents of these extensions (and the supervisors)."""
        return cls(extensions=frozenset(extensions))

    @classmethod
    def supervisors_only(cls) -> Audience:
        """Supervisors and admins only."""
        return cls()

    @classmethod
    def all(cls) -> Audience:
        """Every connected agent."""
        return cls(everyone=True)

    def admits(self, identity: Identity) -> bool:
        """Whether ``identity`` may see an event addressed to this audience."""
        if self.everyone or identity.sees_everything:
            return True
        return not self.extensions.isdisjoint(identity.extensions)


@dataclass(frozen=True, slots=True)
class PushEvent:
    """One published event; ``frame`` is its JSON text, encoded once."""

    seq: int
    type: str
    audience: Audience
    frame: bytes


class Publisher(Protocol):
    """What producers depend on: the in-memory hub, or the PostgreSQL bus."""

    def publish(self, type: str, payload: Mapping[str, Any], audience: Audience) -> object:
        """Number, encode and deliver one event without awaiting."""
        ...


class EndReason(enum.Enum):
    """Why a subscription ended."""

    CLOSED = "closed"
    OVERFLOW = "overflow"
    SHUTDOWN = "shutdown"


class HubClosedError(Exception):
    """The hub is shutting down and accepts no new subscriptions."""


class Subscription:
    """One client's view of the hub: greeting frames, then a bounded live queue.

    ``greeting`` is ``hello`` (plus ``reload`` when ``reload`` is true);
    ``backlog`` holds the missed events this identity may see, oldest first.
    """

    def __init__(
        self,
        identity: Identity,
        greeting: tuple[bytes, ...],
        backlog: tuple[PushEvent, ...],
        *,
        reload: bool,
        queue_size: int,
    ) -> None:
        self.identity = identity
        self.greeting = greeting
        self.backlog = backlog
        self.reload = reload
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_size)
        self.end_reason: EndReason | None = None
        self._ended = asyncio.Event()

    def initial_frames(self) -> Iterable[bytes]:
        """``hello``, then ``reload`` or the missed events, in order."""
        return itertools.chain(self.greeting, (event.frame for event in self.backlog))

    async def next_frame(self) -> bytes:
        """The next live frame (waits until one is published)."""
        return await self.queue.get()

    async def wait_ended(self) -> EndReason:
        """Wait until the hub drops this subscription (overflow or shutdown)."""
        await self._ended.wait()
        assert self.end_reason is not None
        return self.end_reason

    @property
    def ended(self) -> bool:
        """Whether the subscription has ended."""
        return self.end_reason is not None

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame`` without waiting; on a full queue end with OVERFLOW."""
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.end(EndReason.OVERFLOW)
            return False
        return True

    def end(self, reason: EndReason) -> None:
        """Mark the subscription ended (the first reason wins) and wake its handler."""
        if self.end_reason is None:
            self.end_reason = reason
            self._ended.set()


class PushHub:
    """In-memory event hub: numbering, ring buffer, audience routing, fan-out."""

    def __init__(
        self, *, buffer_size: int = 10_000, queue_size: int = 1_000, epoch: str | None = None
    ) -> None:
        if buffer_size < 1 or queue_size < 1:
            raise ValueError("buffer_size and queue_size must be positive")
        self.epoch = epoch or secrets.token_hex(8)
        self.queue_size = queue_size
        self.overflows = 0
        self._seq = 0
        self._floor = 0  # events up to this seq are not (or no longer) in the buffer
        self._numbered_elsewhere = False  # fed by a bus: publish through the bus
        self._buffer: deque[PushEvent] = deque(maxlen=buffer_size)
        self._all: set[Subscription] = set()
        self._privileged: set[Subscription] = set()
        self._by_extension: dict[str, set[Subscription]] = {}
        self._closed = False

    @property
    def current_seq(self) -> int:
        """The seq of the last published event (0 before the first)."""
        return self._seq

    @property
    def clients(self) -> int:
        """Number of live subscriptions (for a Prometheus gauge)."""
        return len(self._all)

    def publish(self, type: str, payload: Mapping[str, Any], audience: Audience) -> PushEvent:
        """Number, encode once, buffer and queue the event to every admitted client."""
        check_event(type, payload)
        if self._numbered_elsewhere:
            raise RuntimeError("this hub is fed by the bus: publish through Services.publisher")
        seq = self._seq + 1
        frame = orjson.dumps({"type": type, "seq": seq, **payload})
        event = PushEvent(seq=seq, type=type, audience=audience, frame=frame)
        self.deliver(event)
        return event

    def deliver(self, event: PushEvent) -> None:
        """Buffer and queue an event numbered elsewhere (the bus); its seq must be
        above :attr:`current_seq` (gaps are allowed)."""
        if event.seq <= self._seq:
            raise ValueError(f"event {event.seq} is not after {self._seq}")
        self._seq = event.seq
        if len(self._buffer) == self._buffer.maxlen:
            self._floor = self._buffer[0].seq
        self._buffer.append(event)
        for subscription in self._targets(event.audience):
            if not subscription.offer(event.frame):
                self.overflows += 1
                self._forget(subscription)

    def restart_at(self, seq: int, epoch: str) -> None:
        """Continue after ``seq`` in ``epoch`` (a bus joining the database's numbering);
        only before the first event and the first client."""
        if self._seq or self._all:
            raise RuntimeError("the hub has already served events or clients")
        self.epoch = epoch
        self._seq = self._floor = seq
        self._numbered_elsewhere = True

    def subscribe(self, identity: Identity, since: int | None, epoch: str | None) -> Subscription:
        """Register a client; its catch-up is computed in the same step (no await)."""
        if self._closed:
            raise HubClosedError("push hub is shutting down")
        hello = orjson.dumps({"type": "hello", "seq": self._seq, "epoch": self.epoch})
        backlog = self._backlog(since, epoch)
        greeting: tuple[bytes, ...] = (hello,)
        if backlog is None:
            greeting += (orjson.dumps({"type": "reload", "seq": self._seq}),)
        visible = tuple(e for e in backlog or () if e.audience.admits(identity))
        subscription = Subscription(
            identity, greeting, visible, reload=backlog is None, queue_size=self.queue_size
        )
        self._register(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Drop a client (idempotent)."""
        subscription.end(EndReason.CLOSED)
        self._forget(subscription)

    def close(self) -> None:
        """Refuse new clients and end every subscription with SHUTDOWN."""
        self._closed = True
        for subscription in list(self._all):
            subscription.end(EndReason.SHUTDOWN)
            self._forget(subscription)

    def _backlog(self, since: int | None, epoch: str | None) -> list[PushEvent] | None:
        """Events after ``since``; None when the client must reload."""
        if since is None:
            return []
        if (epoch is not None and epoch != self.epoch) or since > self._seq or since < self._floor:
            return None
        start = bisect.bisect_right(self._buffer, since, key=lambda event: event.seq)
        return list(itertools.islice(self._buffer, start, None))

    def _targets(self, audience: Audience) -> Iterable[Subscription]:
        if audience.everyone:
            return list(self._all)
        targets = set(self._privileged)
        for extension in audience.extensions:
            targets.update(self._by_extension.get(extension, ()))
        return targets

    def _register(self, subscription: Subscription) -> None:
        self._all.add(subscription)
        if subscription.identity.sees_everything:
            self._privileged.add(subscription)
            return
        for extension in subscription.identity.extensions:
            self._by_extension.setdefault(extension, set()).add(subscription)

    def _forget(self, subscription: Subscription) -> None:
        self._all.discard(subscription)
        self._privileged.discard(subscription)
        for extension in subscription.identity.extensions:
            members = self._by_extension.get(extension)
            if members is not None:
                members.discard(subscription)
                if not members:
                    del self._by_extension[extension]
