"""The channels alive in a replayed AMI stream, as ``CoreShowChannels`` reports them.

Built from the events replayed so far: ``Newchannel`` creates a channel, ``Hangup``
removes it, and every other event about a known ``Uniqueid`` refreshes the channel
snapshot headers it carries (state, caller ID, dialplan position...). ``Newexten``
sets the current application, ``BridgeEnter`` / ``BridgeLeave`` the bridge.
``Duration`` is measured in stream time (the events' ``Timestamp``), not wall time.
"""

from __future__ import annotations

from crmcomms.ami.framing import Message

# The headers of a CoreShowChannel item, in the order Asterisk sends them.
_SNAPSHOT_KEYS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)


class ChannelTable:
    """Live channels of a replayed stream; feed it events in order."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, str]] = {}
        self._created: dict[str, float] = {}
        self._now = 0.0

    def __len__(self) -> int:
        return len(self._channels)

    def apply(self, event: Message) -> None:
        """Update the table with one replayed event."""
        stamp = event.get("Timestamp")
        if stamp is not None:
            self._now = float(stamp)
        uniqueid = event.get("Uniqueid")
        if uniqueid is None:
            return
        name = event.get("Event")
        if name == "Newchannel":
            self._channels[uniqueid] = {"BridgeId": "", "Application": "", "ApplicationData": ""}
            self._created[uniqueid] = self._now
        elif name == "Hangup":
            self._channels.pop(uniqueid, None)
            self._created.pop(uniqueid, None)
            return
        channel = self._channels.get(uniqueid)
        if channel is not None:
            _refresh(channel, name, event)

    def has(self, name: str) -> bool:
        """Whether a channel of this name is alive."""
        return any(channel.get("Channel") == name for channel in self._channels.values())

    def items(self, action_id: str) -> list[Message]:
        """One ``CoreShowChannel`` event per live channel, oldest first."""
        return [self._item(uniqueid, action_id) for uniqueid in self._channels]

    def reset(self) -> None:
        """Forget every channel (the replayed PBX restarted)."""
        self._channels.clear()
        self._created.clear()

    def _item(self, uniqueid: str, action_id: str) -> Message:
        channel = self._channels[uniqueid]
        item = {"Event": "CoreShowChannel", "ActionID": action_id}
        item.update({key: channel.get(key, "") for key in _SNAPSHOT_KEYS})
        item["BridgeId"] = channel["BridgeId"]
        item["Application"] = channel["Application"]
        item["ApplicationData"] = channel["ApplicationData"]
        item["Duration"] = _hms(self._now - self._created[uniqueid])
        return item


def _refresh(channel: dict[str, str], name: str | None, event: Message) -> None:
    for key in _SNAPSHOT_KEYS:
        value = event.get(key)
        if value is not None:
            channel[key] = value
    if name == "Newexten":
        channel["Application"] = event.get("Application", "")
        channel["ApplicationData"] = event.get("AppData", "")
    elif name == "BridgeEnter":
        channel["BridgeId"] = event.get("BridgeUniqueid", "")
    elif name == "BridgeLeave":
        channel["BridgeId"] = ""


def _hms(seconds: float) -> str:
    whole = max(int(seconds), 0)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
