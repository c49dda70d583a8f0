"""Recorded AMI blocks through the AMI edge, as the daemon's link hands them on.

The tracker takes typed events only; tests that replay raw blocks (framed from a
capture, written by hand, or garbage) pass them through the same
:class:`~crmcomms.ami.translate.AmiTranslator` the daemon uses. Blocks the framer
could not parse (:class:`~crmcomms.ami.framing.Malformed`) are the client's to count
and never reach the edge.
"""

from __future__ import annotations

from collections.abc import Iterable

from crmcomms.ami.framing import Malformed, Message
from crmcomms.ami.translate import AmiTranslator
from crmcomms.pbx_events import AmiEvent
from crmcomms.telephony.calls import CallEvent
from crmcomms.telephony.tracker import CallTracker


def typed(blocks: Iterable[Message | Malformed]) -> list[AmiEvent]:
    """The typed events of ``blocks``, in order."""
    events: list[AmiEvent] = []
    edge = AmiTranslator(events.append)
    for block in blocks:
        if isinstance(block, dict) and "Event" in block:  # what the link hands the edge
            edge(block)
    return events


def feed(tracker: CallTracker, blocks: Iterable[Message | Malformed]) -> list[CallEvent]:
    """Feed the typed events of ``blocks`` to ``tracker``; the call events, in order."""
    out: list[CallEvent] = []
    for event in typed(blocks):
        out += tracker.feed(event)
    return out
