"""Typed AMI events for the call tracker, and the one translation from AMI dicts.

:func:`translate` is the only code that knows AMI header spellings
(``CallerIDNum``, ``Linkedid``, ``DestUniqueid``...). It returns a frozen
dataclass, ``None`` for events the tracker does not use (checked on the
``Event`` key before anything is built: most of the stream is VarSet, CEL and
DeviceStateChange), or raises :class:`MalformedEvent` when a header the event
needs is missing. Caller-id style values ``''`` and ``<unknown>`` become
``None``, never ``''``.

Times come from the ``Timestamp: <unix>.<usec>`` header (manager.conf
``timestampevents = yes``) as aware UTC datetimes; events without it
(FullyBooted, the CoreShowChannel list items) carry ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Message = Mapping[str, str]

TRACKED_VARIABLES: frozenset[str] = frozenset(
    {"MIXMONITOR_FILENAME", "INBOUND_DID", "__INBOUND_DID", "_INBOUND_DID"}
)
"""VarSet variables that reach the tracker; every other VarSet is dropped."""


class MalformedEvent(ValueError):
    """An event the tracker uses lacks a header it needs (or has a bad value)."""

    def __init__(self, event_name: str, header: str) -> None:
        super().__init__(f"AMI {event_name} event without a usable {header!r} header")
        self.event_name = event_name
        self.header = header


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
)


def translate(msg: Message) -> AmiEvent | None:
    """The typed event for one AMI message, None if the tracker has no use for it."""
    name = msg.get("Event")
    if name is None:
        return None
    build = _BUILDERS.get(name)
    if build is None:
        return None
    return build(msg, name)


def wanted(block: str) -> bool:
    """Whether a raw block (``\n`` line ends) can matter to the tracker, before parsing.

    Blocks that are not events, or that answer one of our actions (``ActionID``,
    e.g. the CoreShowChannels list), always pass; events the tracker ignores and
    VarSets of other variables are refused. Cheap: string tests on the text only.
    """
    if not block.startswith("Event: ") or "\nActionID:" in block:
        return True
    name = block[7 : block.find("\n")] if "\n" in block else block[7:]
    if name == "VarSet":
        return any(variable in block for variable in TRACKED_VARIABLES)
    return name.strip() in _BUILDERS


# ---------------------------------------------------------------- helpers

_UNSET = frozenset({"", "<unknown>", "<Unknown>", "<null>"})
_SNAPSHOT_FIELDS = (
    "Channel",
    "Uniqueid",
    "Linkedid",
    "ChannelState",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Context",
    "Exten",
)
_PREFIXES = (
    "",
    "Dest",
    "Transferer",
    "Transferee",
    "OrigTransferer",
    "SecondTransferer",
    "TransferTarget",
)
_KEYS = {prefix: tuple(prefix + field for field in _SNAPSHOT_FIELDS) for prefix in _PREFIXES}


def _opt(value: str | None) -> str | None:
    return None if value is None or value in _UNSET else value


def _need(msg: Message, name: str, header: str) -> str:
    value = msg.get(header)
    if value is None or value in _UNSET:
        raise MalformedEvent(name, header)
    return value


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _time(msg: Message, name: str) -> datetime | None:
    value = msg.get("Timestamp")
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedEvent(name, "Timestamp") from None


def _channel(msg: Message, name: str, prefix: str = "") -> ChannelSnapshot:
    chan, uid, lid, state, cnum, cname, lnum, lname, context, exten = _KEYS[prefix]
    return ChannelSnapshot(
        name=_need(msg, name, chan),
        uniqueid=_need(msg, name, uid),
        linkedid=_need(msg, name, lid),
        state=_int(msg.get(state)),
        caller_num=_opt(msg.get(cnum)),
        caller_name=_opt(msg.get(cname)),
        connected_num=_opt(msg.get(lnum)),
        connected_name=_opt(msg.get(lname)),
        context=_opt(msg.get(context)),
        exten=_opt(msg.get(exten)),
    )


def _maybe_channel(msg: Message, name: str, prefix: str) -> ChannelSnapshot | None:
    if _opt(msg.get(prefix + "Uniqueid")) is None:
        return None
    return _channel(msg, name, prefix)


def _duration(value: str | None) -> timedelta | None:
    """``HH:MM:SS`` (CoreShowChannel) or plain seconds."""
    if value is None:
        return None
    parts = value.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return timedelta(seconds=seconds)


# ---------------------------------------------------------------- builders


def _fully_booted(msg: Message, name: str) -> FullyBooted:
    return FullyBooted(_time(msg, name))


def _channel_event(
    cls: type[Newchannel | Newstate | NewCallerid | NewConnectedLine | MixMonitorStart],
) -> Callable[[Message, str], AmiEvent]:
    def build(msg: Message, name: str) -> AmiEvent:
        return cls(_time(msg, name), _channel(msg, name))

    return build


def _dial_begin(msg: Message, name: str) -> DialBegin:
    return DialBegin(
        _time(msg, name),
        _maybe_channel(msg, name, ""),
        _channel(msg, name, "Dest"),
        _opt(msg.get("DialString")),
    )


def _dial_end(msg: Message, name: str) -> DialEnd:
    return DialEnd(
        _time(msg, name),
        _maybe_channel(msg, name, ""),
        _channel(msg, name, "Dest"),
        _need(msg, name, "DialStatus"),
    )


def _hangup(msg: Message, name: str) -> Hangup:
    return Hangup(
        _time(msg, name),
        _channel(msg, name),
        _int(msg.get("Cause")),
        _opt(msg.get("Cause-txt")),
    )


def _bridge_enter(msg: Message, name: str) -> BridgeEnter:
    return BridgeEnter(
        _time(msg, name),
        _channel(msg, name),
        _need(msg, name, "BridgeUniqueid"),
        _opt(msg.get("SwapUniqueid")),
    )


def _bridge_leave(msg: Message, name: str) -> BridgeLeave:
    return BridgeLeave(_time(msg, name), _channel(msg, name), _need(msg, name, "BridgeUniqueid"))


def _var_set(msg: Message, name: str) -> VarSet | None:
    variable = msg.get("Variable")
    if variable not in TRACKED_VARIABLES:
        return None
    return VarSet(_time(msg, name), _channel(msg, name), variable, _opt(msg.get("Value")))


def _queue_caller(
    cls: type[QueueCallerJoin | QueueCallerLeave | QueueCallerAbandon],
) -> Callable[[Message, str], AmiEvent]:
    def build(msg: Message, name: str) -> AmiEvent:
        return cls(_time(msg, name), _channel(msg, name), _need(msg, name, "Queue"))

    return build


def _queue_member(
    cls: type[AgentCalled | AgentConnect | AgentRingNoAnswer | AgentComplete],
) -> Callable[[Message, str], AmiEvent]:
    def build(msg: Message, name: str) -> AmiEvent:
        return cls(
            _time(msg, name),
            _channel(msg, name),
            _channel(msg, name, "Dest"),
            _need(msg, name, "Queue"),
            _opt(msg.get("Interface")),
        )

    return build


def _blind_transfer(msg: Message, name: str) -> BlindTransfer:
    return BlindTransfer(
        _time(msg, name),
        _need(msg, name, "Result"),
        _channel(msg, name, "Transferer"),
        _maybe_channel(msg, name, "Transferee"),
        _opt(msg.get("Context")),
        _opt(msg.get("Extension")),
    )


def _attended_transfer(msg: Message, name: str) -> AttendedTransfer:
    return AttendedTransfer(
        _time(msg, name),
        _need(msg, name, "Result"),
        _channel(msg, name, "OrigTransferer"),
        _channel(msg, name, "SecondTransferer"),
        _maybe_channel(msg, name, "Transferee"),
        _maybe_channel(msg, name, "TransferTarget"),
        _opt(msg.get("DestType")),
    )


def _originate_response(msg: Message, name: str) -> OriginateResponse:
    return OriginateResponse(
        _time(msg, name),
        _opt(msg.get("ActionID")),
        _need(msg, name, "Response"),
        _opt(msg.get("Uniqueid")),
        _opt(msg.get("Channel")),
        _opt(msg.get("Context")),
        _opt(msg.get("Exten")),
    )


def _core_show_channel(msg: Message, name: str) -> CoreShowChannel:
    return CoreShowChannel(
        _time(msg, name),
        _opt(msg.get("ActionID")),
        _channel(msg, name),
        _opt(msg.get("BridgeId")),
        _opt(msg.get("Application")),
        _duration(msg.get("Duration")),
    )


_BUILDERS: dict[str, Callable[[Message, str], AmiEvent | None]] = {
    "FullyBooted": _fully_booted,
    "Newchannel": _channel_event(Newchannel),
    "Newstate": _channel_event(Newstate),
    "NewCallerid": _channel_event(NewCallerid),
    "NewConnectedLine": _channel_event(NewConnectedLine),
    "MixMonitorStart": _channel_event(MixMonitorStart),
    "DialBegin": _dial_begin,
    "DialEnd": _dial_end,
    "Hangup": _hangup,
    "BridgeEnter": _bridge_enter,
    "BridgeLeave": _bridge_leave,
    "VarSet": _var_set,
    "QueueCallerJoin": _queue_caller(QueueCallerJoin),
    "QueueCallerLeave": _queue_caller(QueueCallerLeave),
    "QueueCallerAbandon": _queue_caller(QueueCallerAbandon),
    "AgentCalled": _queue_member(AgentCalled),
    "AgentConnect": _queue_member(AgentConnect),
    "AgentRingNoAnswer": _queue_member(AgentRingNoAnswer),
    "AgentComplete": _queue_member(AgentComplete),
    "BlindTransfer": _blind_transfer,
    "AttendedTransfer": _attended_transfer,
    "OriginateResponse": _originate_response,
    "CoreShowChannel": _core_show_channel,
}
