"""The peer project's older-Asterisk recordings through the tracker, against ``expected.json``.

Every recording (Asterisk 13-15, chan_sip: call groups, pickups, blind,
attended and "blonde" transfers, click-to-dial) is framed like a live link and
fed to a default :class:`CallTracker`; every call ``expected.json`` lists must
be logged once, as expected, and no other call may be logged.
"""

from __future__ import annotations

from collections import Counter

import pytest

from crmcomms.ami.framing import AmiFramer
from crmcomms.ami.translate import AmiTranslator
from crmcomms.pbx_events import AmiEvent
from crmcomms.telephony.calls import CallEnded, CallEvent, CallTransferred
from crmcomms.telephony.tracker import CallTracker
from tests.peer_captures import ami_bytes, expected, mismatches

EXPECTED = expected()


def peer_names() -> list[str]:
    return sorted(EXPECTED)


def replay(name: str) -> list[CallEvent]:
    tracker = CallTracker()
    events: list[CallEvent] = []
    blocks = AmiFramer().feed(ami_bytes(name))
    assert all(isinstance(block, dict) for block in blocks)
    typed: list[AmiEvent] = []
    edge = AmiTranslator(typed.append)
    for block in blocks:
        if isinstance(block, dict) and "Event" in block:
            edge(block)
    assert edge.stats.malformed == 0
    for event in typed:
        events += tracker.feed(event)
    assert tracker.active_calls() == []
    return events


@pytest.mark.parametrize("name", peer_names())
def test_peer_recording_gives_the_expected_calls(name: str) -> None:
    events = replay(name)

    logged = Counter(e.call.linkedid for e in events if isinstance(e, CallEnded))
    calls = {e.call.linkedid: e.call for e in events if isinstance(e, CallEnded)}
    wanted = {call["linkedid"]: call for call in EXPECTED[name]["calls"]}
    assert all(n == 1 for n in logged.values()), logged
    assert set(calls) == set(wanted)
    problems = {lid: mismatches(calls.get(lid), want) for lid, want in wanted.items()}
    assert not any(problems.values()), problems


TRANSFERS = sorted(
    name for name, entry in EXPECTED.items() if any(c["transfer_to"] for c in entry["calls"])
)


@pytest.mark.parametrize("name", TRANSFERS)
def test_every_transfer_is_announced_with_its_target(name: str) -> None:
    events = replay(name)

    transferred = [e for e in events if isinstance(e, CallTransferred)]
    assert transferred
    for event in transferred:
        assert event.transfer.from_ext and event.transfer.to_ext, event.transfer
        assert event.transfer in event.call.transfers
