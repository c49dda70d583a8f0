"""What the call tracker reports: immutable call snapshots and call events.

A :class:`CallSnapshot` is one call as known at the moment of an event; its
fields are the call JSON of the HTTP API. One call is one Asterisk
``Linkedid``: every leg (agent phones, trunk, Local channels, the target of a
transfer) belongs to it.

Event contract, per call and agent extension:

- :class:`CallRinging` once when the agent's phone starts ringing (several
  devices of one extension, or a queue ringing the agent again while the first
  attempt still rings, give one pop);
- then exactly one of :class:`CallAnswered` (the agent is connected) or
  :class:`CallRingStopped` (the ringing ended without them: another agent
  answered, ring timeout, the caller hung up), always before the call's
  :class:`CallEnded`;
- :class:`CallAnswered` is also sent, without a ringing before it, to the
  agent who placed an outbound or internal call when the other side answers;
- :class:`CallEnded` exactly once per Linkedid, carrying the final status.

Empty strings in a snapshot mean "not applicable / not known": ``callee`` and
``did`` of a call that never reached the dialplan, ``queue`` of a non-queue
call, ``hangup_cause`` of a call still in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Direction = Literal["inbound", "outbound", "internal"]
CallStatus = Literal[
    "ringing", "talking", "answered", "missed", "busy", "failed", "abandoned", "unknown"
]
TransferKind = Literal["blind", "attended"]


@dataclass(frozen=True, slots=True)
class Transfer:
    """A completed transfer: agent ``from_ext`` handed the call to ``to_ext``."""

    from_ext: str
    to_ext: str
    kind: TransferKind


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    """One call (one Linkedid) as known at the time of the event carrying it.

    - ``direction``: inbound when the first channel is not an agent's;
      outbound when an agent calls a non-agent (also click-to-dial, where the
      PBX first rings the agent); internal when an agent calls an agent.
    - ``status``: ``ringing``/``talking`` while in progress, then one of
      answered | missed | busy | failed | abandoned. Not answered gives
      ``missed`` (inbound and internal) or ``failed`` (outbound), ``busy``
      when the last dial attempt found the callee busy, ``abandoned`` when the
      caller hung up while waiting in a queue.
    - ``caller``/``caller_name``: inbound, the customer's number and the name
      the PBX presents to the agent's phone, i.e. after the dialplan changed it
      (a ``Set(CALLERID(name)=...)`` before ``Queue()`` shows here, not the
      name the carrier sent); outbound/internal, the calling agent's extension
      and its channel's name at creation.
    - ``callee``: the dialled number (the DID for inbound calls).
    - ``answered_by``: the first agent who answered (None for outbound calls,
      which the far end answers); ``talked`` lists every agent who was
      connected to the customer (or, on internal calls, to each other), in
      order, including transfer targets.
    - ``ring_seconds``: first ring to answer, or to the end when unanswered;
      ``talk_seconds``: answer to end. Both rounded, up to the event's time
      while the call is in progress.
    - ``hangup_cause``: Asterisk's ``Cause-txt`` of the customer's channel.
    - ``recording``: the full path MixMonitor writes (MIXMONITOR_FILENAME).
    - ``times_uncertain``: some time of the call is not known from the PBX
      (the link was down when it changed); unknown times are None, unknown
      durations None. ``status`` is ``unknown`` for a call that ended while
      the link was down before anyone was seen to answer, until a CDR says more.
    - ``backfilled``: facts came from Asterisk's CDR, not from live events.
    """

    linkedid: str
    direction: Direction
    status: CallStatus
    caller: str
    caller_name: str
    callee: str
    did: str
    queue: str
    agents_rung: tuple[str, ...]
    answered_by: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    ring_seconds: int | None
    talk_seconds: int | None
    hangup_cause: str
    recording: str | None
    transfers: tuple[Transfer, ...]
    talked: tuple[str, ...]
    times_uncertain: bool = False
    backfilled: bool = False


@dataclass(frozen=True, slots=True)
class CallRinging:
    """The phone of ``agent`` started ringing for this call (screen pop)."""

    call: CallSnapshot
    agent: str


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """``agent`` is now connected on this call."""

    call: CallSnapshot
    agent: str


@dataclass(frozen=True, slots=True)
class CallRingStopped:
    """The phone of ``agent`` stopped ringing without them answering."""

    call: CallSnapshot
    agent: str


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """The call was transferred (blind or attended); it keeps its Linkedid."""

    call: CallSnapshot
    transfer: Transfer


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The last channel of the call hung up: final status and durations."""

    call: CallSnapshot


CallEvent = CallRinging | CallAnswered | CallRingStopped | CallTransferred | CallEnded
