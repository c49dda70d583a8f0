"""The AMI edge's translation: AMI messages in, typed events out, and the pre-parse filter.

:func:`translate` is the only code that knows AMI header spellings
(``CallerIDNum``, ``Linkedid``, ``DestUniqueid``...). It returns one of the
frozen dataclasses of :mod:`crmcomms.pbx_events`, ``None`` for events no one
uses (checked on the ``Event`` key before anything is built: most of the stream
is VarSet, CEL and DeviceStateChange), or raises :class:`MalformedEvent` when a
header the event needs is missing. Caller-id style values ``''`` and
``<unknown>`` become ``None``, never ``''``.

Times come from the ``Timestamp: <unix>.<usec>`` header (manager.conf
``timestampevents = yes``) as aware UTC datetimes; events without it
(FullyBooted, the CoreShowChannel list items) carry ``None``.

:func:`worth_parsing` looks at a block's raw text before the framer parses it and says
False only for blocks ``translate`` would give ``None`` for. It runs for every
block of the stream, so it does as little as it can. Both are driven by one
table: the event names of :data:`_BUILDERS` and the variables of
:data:`~crmcomms.pbx_events.TRACKED_VARIABLES`.

:class:`AmiTranslator` is the edge itself: the client's ``on_message``, it hands
each typed event on and counts what it drops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter

from crmcomms.ami.framing import Message
from crmcomms.pbx_events import (
    TRACKED_VARIABLES,
    AgentCalled,
    AgentComplete,
    AgentConnect,
    AgentRingNoAnswer,
    AmiEvent,
    AttendedTransfer,
    BlindTransfer,
    BridgeEnter,
    BridgeLeave,
    ChannelSnapshot,
    CoreShowChannel,
    DialBegin,
    DialEnd,
    FullyBooted,
    Hangup,
    MixMonitorStart,
    NewCallerid,
    Newchannel,
    NewConnectedLine,
    Newstate,
    OriginateResponse,
    QueueCallerAbandon,
    QueueCallerJoin,
    QueueCallerLeave,
    QueueEntry,
    QueueMember,
    QueueParams,
    VarSet,
)

log = logging.getLogger(__name__)


class MalformedEvent(ValueError):
    """An event the tracker uses lacks a header it needs (or has a bad value)."""

    def __init__(self, event_name: str, header: str) -> None:
        super().__init__(f"AMI {event_name} event without a usable {header!r} header")
        self.event_name = event_name
        self.header = header


def translate(msg: Message) -> AmiEvent | None:
    """The typed event for one AMI message, None if no one has a use for it."""
    name = msg.get("Event")
    if name is None:
        return None
    build = _BUILDERS.get(name)
    return None if build is None else build(msg, name)


def translate_items(items: Iterable[Message], answer: str) -> list[AmiEvent]:
    """The items of a list action's answer (``answer``: its name, for the log) as typed
    events; malformed ones are logged and skipped."""
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


def worth_parsing(block: str) -> bool:
    """Whether a raw block (``\n`` line ends) can matter to the tracker, before parsing.

    Blocks that are not events, or that answer one of our actions (``ActionID``,
    e.g. the CoreShowChannels list), always pass; events no one uses and VarSets
    not naming a tracked variable anywhere are refused. Cheap: a set lookup of
    the first line, and substring tests for the others.
    """
    first = block.partition("\n")[0]
    if first == "Event: VarSet":  # half of all blocks
        for name in _VARIABLE_NAMES:
            if name in block:
                return True
        return "\nActionID:" in block
    if first in _WANTED_FIRST_LINES or "\nActionID:" in block or not first.startswith("Event: "):
        return True
    return first[7:].strip() in _BUILDERS  # "Event:  Hangup " and the like


@dataclass(slots=True)
class TranslationStats:
    """Counters of :class:`AmiTranslator`."""

    filtered: int = 0  # blocks refused unparsed by the pre-filter
    unknown: int = 0  # parsed, and of no use (other events, other VarSets)
    malformed: int = 0  # events lacking a needed header


def _nothing() -> None:
    return None


class AmiTranslator:
    """The typed edge: the framer's pre-filter (:meth:`keep`) and the client's
    ``on_message``; each typed event is handed to ``deliver``, in wire order. What
    it drops (filtered, unused, malformed) is counted, and ``dropped`` told."""

    def __init__(
        self, deliver: Callable[[AmiEvent], None], dropped: Callable[[], None] = _nothing
    ) -> None:
        self._deliver = deliver
        self._dropped = dropped
        self.stats = TranslationStats()

    def keep(self, block: str) -> bool:
        """:func:`worth_parsing`, counting what it refuses."""
        if worth_parsing(block):
            return True
        self.stats.filtered += 1
        self._dropped()
        return False

    def __call__(self, msg: Message) -> None:
        try:
            event = translate(msg)
        except MalformedEvent as exc:
            self.stats.malformed += 1
            log.debug("AMI: skipped an event: %s", exc)
            self._dropped()
            return
        if event is None:
            self.stats.unknown += 1
            self._dropped()
            return
        self._deliver(event)


# ---------------------------------------------------------------- helpers

_UNSET: dict[str | None, None] = dict.fromkeys(("", "<unknown>", "<Unknown>", "<null>"))
"""Values that mean "none": ``_UNSET.get(value, value)`` is the value or None."""
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
_GET_ALL = {prefix: itemgetter(*keys) for prefix, keys in _KEYS.items()}


def _opt(value: str | None) -> str | None:
    return _UNSET.get(value, value)


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
    keys = _KEYS[prefix]
    try:
        values = _GET_ALL[prefix](msg)  # the usual case: every header present
    except KeyError:
        values = tuple(map(msg.get, keys))
    # each value, or None for a missing or "unset" one ('', '<unknown>'...)
    chan, uid, lid, state, cnum, cname, lnum, lname, context, exten = map(
        _UNSET.get, values, values
    )
    if chan is None or uid is None or lid is None:
        missing = keys[0] if chan is None else keys[1] if uid is None else keys[2]
        raise MalformedEvent(name, missing)
    return ChannelSnapshot(chan, uid, lid, _int(state), cnum, cname, lnum, lname, context, exten)


def _maybe_channel(msg: Message, name: str, prefix: str) -> ChannelSnapshot | None:
    if _opt(msg.get(_KEYS[prefix][1])) is None:  # no <prefix>Uniqueid
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


def _new_callerid(msg: Message, name: str) -> NewCallerid | None:
    """None when the change only masks the number (presentation prohibited, e.g.
    ``+31260xxxxxx``): the call keeps the number Asterisk received; hiding it from
    the phones' displays is the dialplan's business, not a new caller."""
    if _prohibited(msg.get("CID-CallingPres")):
        return None
    return NewCallerid(_time(msg, name), _channel(msg, name))


def _prohibited(presentation: str | None) -> bool:
    """``CID-CallingPres: 33 (Presentation Prohibited, Passed Screen)``: codes 0x20-0x23."""
    code = _int(presentation.partition(" ")[0]) if presentation else None
    return code is not None and code & 0x60 == 0x20


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


def _epoch(value: str | None) -> datetime | None:
    """A unix time header (``LoginTime``); None when 0 or absent."""
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _queue_member_event(msg: Message, name: str) -> QueueMember:
    """Queue member events say ``MemberName``/``Interface``; the QueueStatus list item
    ``Name``/``Location`` (app_queue.c)."""
    interface = msg.get("Interface") or msg.get("Location")
    if not interface:
        raise MalformedEvent(name, "Interface")
    return QueueMember(
        _time(msg, name),
        name,
        _need(msg, name, "Queue"),
        interface,
        _opt(msg.get("StateInterface")),
        _opt(msg.get("MemberName") or msg.get("Name")),
        _int(msg.get("Status")),
        msg.get("Paused") == "1",
        _opt(msg.get("PausedReason")),
        msg.get("InCall") == "1",
        _epoch(msg.get("LoginTime")),
        removed=name == "QueueMemberRemoved",
    )


def _queue_params(msg: Message, name: str) -> QueueParams:
    return QueueParams(_time(msg, name), _need(msg, name, "Queue"), _int(msg.get("Calls")))


def _queue_entry(msg: Message, name: str) -> QueueEntry:
    return QueueEntry(
        _time(msg, name),
        _need(msg, name, "Queue"),
        _need(msg, name, "Uniqueid"),
        _int(msg.get("Position")),
        _duration(msg.get("Wait")),
    )


_BUILDERS: dict[str, Callable[[Message, str], AmiEvent | None]] = {
    "FullyBooted": _fully_booted,
    "Newchannel": _channel_event(Newchannel),
    "Newstate": _channel_event(Newstate),
    "NewCallerid": _new_callerid,
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
    "QueueMember": _queue_member_event,
    "QueueMemberStatus": _queue_member_event,
    "QueueMemberPause": _queue_member_event,
    "QueueMemberAdded": _queue_member_event,
    "QueueMemberRemoved": _queue_member_event,
    "QueueParams": _queue_params,
    "QueueEntry": _queue_entry,
}
_WANTED_FIRST_LINES = frozenset(f"Event: {name}" for name in _BUILDERS if name != "VarSet")
#: What a VarSet block must contain to be parsed: each tracked variable without the
#: inheritance prefix (``INBOUND_DID`` also finds ``_INBOUND_DID`` and ``__INBOUND_DID``).
_VARIABLE_NAMES = tuple(sorted({name.lstrip("_") for name in TRACKED_VARIABLES}))
