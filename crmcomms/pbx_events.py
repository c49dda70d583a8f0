"""What the PBX reports, as typed values: the AMI events crmcomms uses, one frozen
dataclass per event, and the channel variables it tracks.

The vocabulary between the AMI edge and the logic: only
:func:`crmcomms.ami.translate.translate` builds these values, from AMI messages (it
alone knows AMI's header spellings); the call tracker and the queue presence take
them and import nothing from :mod:`crmcomms.ami`. Caller-id style values are ``None``
when Asterisk sends ``''`` or ``<unknown>``, never ``''``. ``timestamp`` is the
event's ``Timestamp`` header as an aware UTC datetime, ``None`` for events
without one (FullyBooted, the CoreShowChannel list items).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

RECORDING_VARIABLE = "MIXMONITOR_FILENAME"
"""Set by MixMonitor on the recorded channel: the full path of the recording."""
DID_VARIABLE = "INBOUND_DID"
"""Set by the dialplan on an inbound call: the number dialled (also inherited, ``_``/``__``)."""
DIAL_NUMBER_VARIABLE = "CRM_DIAL_NUMBER"
"""Set on the agent's channel by crmcomms' click-to-dial Originate: the number it dials."""
TRACKED_VARIABLES: frozenset[str] = frozenset(
    {
        RECORDING_VARIABLE,
        DID_VARIABLE,
        f"_{DID_VARIABLE}",
        f"__{DID_VARIABLE}",
        DIAL_NUMBER_VARIABLE,
    }
)
"""VarSet variables that reach the tracker (as the PBX names them); every other VarSet
is dropped at the edge, before it is parsed."""


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """A channel as described by an event (``Dest``/``Transferer``... prefixes)."""

    name: str
    uniqueid: str
    linkedid: str
    state: int | None
    caller_num: str | None
    caller_name: str | None
    connected_num: str | None
    connected_name: str | None
    context: str | None
    exten: str | None


@dataclass(frozen=True, slots=True)
class FullyBooted:
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class Newchannel:
    timestamp: datetime | None
    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class Newstate:
    timestamp: datetime | None
    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class NewCallerid:
    timestamp: datetime | None
    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class NewConnectedLine:
    timestamp: datetime | None
    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class DialBegin:
    """``caller`` is None when the PBX itself dials (AMI Originate)."""

    timestamp: datetime | None
    caller: ChannelSnapshot | None
    dest: ChannelSnapshot
    dial_string: str | None


@dataclass(frozen=True, slots=True)
class DialEnd:
    timestamp: datetime | None
    caller: ChannelSnapshot | None
    dest: ChannelSnapshot
    status: str


@dataclass(frozen=True, slots=True)
class Hangup:
    timestamp: datetime | None
    channel: ChannelSnapshot
    cause: int | None
    cause_text: str | None


@dataclass(frozen=True, slots=True)
class BridgeEnter:
    timestamp: datetime | None
    channel: ChannelSnapshot
    bridge_id: str
    swap_uniqueid: str | None


@dataclass(frozen=True, slots=True)
class BridgeLeave:
    timestamp: datetime | None
    channel: ChannelSnapshot
    bridge_id: str


@dataclass(frozen=True, slots=True)
class VarSet:
    """Only for :data:`TRACKED_VARIABLES`."""

    timestamp: datetime | None
    channel: ChannelSnapshot
    variable: str
    value: str | None


@dataclass(frozen=True, slots=True)
class MixMonitorStart:
    timestamp: datetime | None
    channel: ChannelSnapshot


@dataclass(frozen=True, slots=True)
class QueueCallerJoin:
    timestamp: datetime | None
    channel: ChannelSnapshot
    queue: str


@dataclass(frozen=True, slots=True)
class QueueCallerLeave:
    timestamp: datetime | None
    channel: ChannelSnapshot
    queue: str


@dataclass(frozen=True, slots=True)
class QueueCallerAbandon:
    timestamp: datetime | None
    channel: ChannelSnapshot
    queue: str


@dataclass(frozen=True, slots=True)
class AgentCalled:
    """``caller`` waits in ``queue``; ``dest`` is the member's channel."""

    timestamp: datetime | None
    caller: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str | None


@dataclass(frozen=True, slots=True)
class AgentConnect:
    timestamp: datetime | None
    caller: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str | None


@dataclass(frozen=True, slots=True)
class AgentRingNoAnswer:
    timestamp: datetime | None
    caller: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str | None


@dataclass(frozen=True, slots=True)
class AgentComplete:
    timestamp: datetime | None
    caller: ChannelSnapshot
    dest: ChannelSnapshot
    queue: str
    interface: str | None


@dataclass(frozen=True, slots=True)
class BlindTransfer:
    timestamp: datetime | None
    result: str
    transferer: ChannelSnapshot
    transferee: ChannelSnapshot | None
    context: str | None
    extension: str | None


@dataclass(frozen=True, slots=True)
class AttendedTransfer:
    """``orig_transferer`` is the transferer's channel in the older call."""

    timestamp: datetime | None
    result: str
    orig_transferer: ChannelSnapshot
    second_transferer: ChannelSnapshot
    transferee: ChannelSnapshot | None
    target: ChannelSnapshot | None
    dest_type: str | None


@dataclass(frozen=True, slots=True)
class OriginateResponse:
    timestamp: datetime | None
    action_id: str | None
    response: str
    uniqueid: str | None
    channel: str | None
    context: str | None
    exten: str | None


@dataclass(frozen=True, slots=True)
class CoreShowChannel:
    """One item of the CoreShowChannels action's response list."""

    timestamp: datetime | None
    action_id: str | None
    channel: ChannelSnapshot
    bridge_id: str | None
    application: str | None
    duration: timedelta | None


@dataclass(frozen=True, slots=True)
class QueueMember:
    """A queue member's state: the ``QueueMember`` item of a QueueStatus answer, or a
    ``QueueMemberStatus`` / ``QueueMemberPause`` / ``QueueMemberAdded`` /
    ``QueueMemberRemoved`` event (``kind`` says which; ``removed`` for the last).

    ``interface`` is the member's dial location (``PJSIP/101``,
    ``Local/101@from-queue/n``); ``status`` Asterisk's device state number
    (1 not in use, 2 in use, 5 unavailable, 6 ringing...); ``login_time`` the
    PBX's time of the member's login, when it sends one.
    """

    timestamp: datetime | None
    kind: str
    queue: str
    interface: str
    state_interface: str | None
    name: str | None
    status: int | None
    paused: bool
    paused_reason: str | None
    in_call: bool
    login_time: datetime | None
    removed: bool = False


@dataclass(frozen=True, slots=True)
class QueueParams:
    """The ``QueueParams`` item of a QueueStatus answer: one queue's counters."""

    timestamp: datetime | None
    queue: str
    calls: int | None


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """The ``QueueEntry`` item of a QueueStatus answer: a caller waiting in a queue for
    ``wait`` (as the PBX counts it when it answered)."""

    timestamp: datetime | None
    queue: str
    uniqueid: str
    position: int | None
    wait: timedelta | None


AmiEvent = (
    FullyBooted
    | Newchannel
    | Newstate
    | NewCallerid
    | NewConnectedLine
    | DialBegin
    | DialEnd
    | Hangup
    | BridgeEnter
    | BridgeLeave
    | VarSet
    | MixMonitorStart
    | QueueCallerJoin
    | QueueCallerLeave
    | QueueCallerAbandon
    | AgentCalled
    | AgentConnect
    | AgentRingNoAnswer
    | AgentComplete
    | BlindTransfer
    | AttendedTransfer
    | OriginateResponse
    | CoreShowChannel
    | QueueMember
    | QueueParams
    | QueueEntry
)
