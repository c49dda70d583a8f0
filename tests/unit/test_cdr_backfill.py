"""CDR rows -> calls: every recorded outage's calls against its truth, then the rules by table."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmcomms.cdr.backfill import calls_from_cdr
from crmcomms.cdr.rows import BadCdrRow, CdrRow, row_from_fields, row_from_mapping
from crmcomms.telephony.agents import agent_matcher
from crmcomms.telephony.calls import Transfer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "outages"
SCENARIOS = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
agent_of = agent_matcher()


def fixture_rows(scenario: str) -> list[CdrRow]:
    with (FIXTURES / scenario / "cdr-custom.csv").open(newline="") as file:
        return [row_from_fields(fields) for fields in csv.reader(file)]


def one_line(scenario: str) -> list[str]:
    [fields] = csv.reader((FIXTURES / scenario / "cdr-custom.csv").read_text().splitlines())
    return fields


def truth_calls() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for scenario in SCENARIOS:
        truth = json.loads((FIXTURES / scenario / "truth.json").read_text())
        cases += [(scenario, call) for call in truth["calls"]]
    return cases


def at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def assert_near(got: datetime | None, true: float) -> None:
    assert got is not None
    assert abs((got - at(true)).total_seconds()) < 1.0, (got, at(true))


@pytest.mark.parametrize(
    ("scenario", "truth"), truth_calls(), ids=lambda v: v if isinstance(v, str) else v["linkedid"]
)
def test_every_recorded_call_comes_out_as_the_truth(scenario: str, truth: dict[str, Any]) -> None:
    calls = {call.linkedid: call for call in calls_from_cdr(fixture_rows(scenario), agent_of)}
    call = calls[truth["linkedid"]]
    times = truth["times"]
    assert call.backfilled
    assert call.direction == truth["direction"]
    assert call.caller == truth["caller_number"]
    assert call.callee == call.did == truth["dialed_number"]
    assert call.queue == (truth["queue"] or "")
    assert call.agents_rung == tuple(truth["agents_rung"])
    assert call.answered_by == truth["answered_by"]
    assert call.status == ("missed" if truth["missed"] else "answered")
    assert_near(call.started_at, times["call_start"])
    assert_near(call.ended_at, times["call_end"])
    assert call.hangup_cause == ""
    if call.answered_at is not None:
        assert_near(call.answered_at, times["agent_answered"])
    if truth["missed"]:
        assert call.talk_seconds == 0
        assert call.ring_seconds is not None
        assert abs(call.ring_seconds - times["ring_seconds"]) <= 1
        assert not call.times_uncertain


def test_a_queue_calls_answer_time_is_not_the_pickup() -> None:
    """The winner's ``answer`` is the dialplan's Answer(): pickup unknown, never guessed."""
    [call] = calls_from_cdr(fixture_rows("answered-during-outage"), agent_of)
    assert call.answered_by == "102"
    assert call.answered_at is None
    assert call.times_uncertain
    assert call.ring_seconds is None and call.talk_seconds is None
    assert call.caller_name == "Support: +49302000004"


def test_a_direct_call_dates_the_pickup() -> None:
    [call] = calls_from_cdr(fixture_rows("ended-during-outage"), agent_of)
    assert call.answered_at == datetime(2026, 12, 2, 2, 57, 33, tzinfo=UTC)
    assert (call.ring_seconds, call.talk_seconds) == (2, 7)
    assert not call.times_uncertain
    assert call.caller_name == "Customer"
    assert call.talked == ("101",)


def test_the_blonde_transfer_has_five_rows_and_one_call() -> None:
    rows = fixture_rows("blonde-transfer")
    assert len(rows) == 5
    [call] = calls_from_cdr(rows, agent_of)
    assert call.transfers == (Transfer("101", "103", "attended"),)
    assert call.talked == ("101", "103")
    assert call.answered_at == datetime(2026, 12, 2, 2, 59, 37, tzinfo=UTC)
    assert call.talk_seconds == 8


def test_rows_of_several_calls_in_any_order_make_one_call_each() -> None:
    rows = fixture_rows("whole-call-during-outage") + fixture_rows("blonde-transfer")
    calls = calls_from_cdr(reversed(rows), agent_of)
    assert [c.linkedid for c in calls] == ["1796180276.2", "1796180286.5", "1796180375.14"]


# ----------------------------------------------------------------- rules by table

T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


def leg(
    channel: str,
    dstchannel: str,
    disposition: str,
    start: int,
    end: int,
    answer: int | None = None,
    lastapp: str = "Dial",
    lastdata: str = "",
    src: str = "+4930555",
    dst: str = "5550101",
    sequence: int = 0,
) -> CdrRow:
    """A row of call "L1" with times in seconds after T0."""
    return CdrRow(
        accountcode="",
        src=src,
        dst=dst,
        dcontext="ctx",
        clid=f'"Name" <{src}>',
        channel=channel,
        dstchannel=dstchannel,
        lastapp=lastapp,
        lastdata=lastdata,
        start=T0 + timedelta(seconds=start),
        answer=None if answer is None else T0 + timedelta(seconds=answer),
        end=T0 + timedelta(seconds=end),
        duration=end - start,
        billsec=0 if answer is None else end - answer,
        disposition=disposition,
        amaflags="DOCUMENTATION",
        userfield="",
        uniqueid="L1",
        linkedid="L1",
        peeraccount="",
        sequence=sequence,
    )


TRUNK = "PJSIP/carrier-00000001"
Q = {"lastapp": "Queue", "lastdata": "support,t,,,120"}
RULES: list[tuple[str, list[CdrRow], dict[str, Any]]] = [
    (
        "direct call, agent busy",
        [leg(TRUNK, "PJSIP/101-00000002", "BUSY", 0, 1)],
        {"status": "busy", "agents_rung": ("101",), "answered_by": None},
    ),
    (
        "queue call, caller hung up while queued",
        [
            leg(TRUNK, "PJSIP/101-00000002", "NO ANSWER", 0, 9, answer=0, sequence=1, **Q),
            leg(TRUNK, "PJSIP/102-00000003", "NO ANSWER", 0, 9, answer=0, sequence=2, **Q),
        ],
        {"status": "abandoned", "queue": "support", "agents_rung": ("101", "102")},
    ),
    (
        "queue timeout, then voicemail",
        [
            leg(TRUNK, "PJSIP/101-00000002", "NO ANSWER", 0, 30, answer=0, sequence=1, **Q),
            leg(TRUNK, "", "ANSWERED", 30, 50, answer=0, sequence=2, lastapp="VoiceMail"),
        ],
        {"status": "missed", "answered_by": None, "ring_seconds": 50},
    ),
    (
        "queue, no member reachable, caller hung up",
        [leg(TRUNK, "", "ANSWERED", 0, 20, answer=0, **Q)],
        {"status": "abandoned", "agents_rung": (), "ring_seconds": 0},
    ),
    (
        "outbound answered",
        [leg("PJSIP/101-00000002", TRUNK, "ANSWERED", 0, 20, answer=5, src="101", dst="0301")],
        {
            "direction": "outbound",
            "status": "answered",
            "caller": "101",
            "callee": "0301",
            "did": "",
            "answered_by": None,
            "answered_at": T0 + timedelta(seconds=5),
            "talked": ("101",),
        },
    ),
    (
        "outbound not answered",
        [leg("PJSIP/101-00000002", TRUNK, "NO ANSWER", 0, 20, src="101", dst="0301")],
        {"direction": "outbound", "status": "failed", "agents_rung": ()},
    ),
    (
        "internal 101 -> 102 answered",
        [leg("PJSIP/101-2", "PJSIP/102-3", "ANSWERED", 0, 9, answer=2, src="101", dst="102")],
        {
            "direction": "internal",
            "status": "answered",
            "answered_by": "102",
            "agents_rung": ("102",),
            "talked": ("101", "102"),
            "ring_seconds": 2,
            "talk_seconds": 7,
        },
    ),
    (
        "answered by the dialplan before the Dial: pickup unknown",
        [leg(TRUNK, "PJSIP/101-00000002", "ANSWERED", 3, 9, answer=3)],
        {"answered_by": "101", "answered_at": None, "times_uncertain": True},
    ),
    (
        "ring group through Local channels, 102 answers",
        [
            leg(TRUNK, "Local/600@rg-00000001;1", "ANSWERED", 0, 30, answer=4, sequence=1),
            leg("Local/600@rg-00000001;2", "PJSIP/101-2", "NO ANSWER", 0, 4, sequence=2),
            leg("Local/600@rg-00000001;2", "PJSIP/102-3", "ANSWERED", 0, 30, answer=4, sequence=3),
        ],
        {
            "status": "answered",
            "agents_rung": ("101", "102"),
            "answered_by": "102",
            "answered_at": T0 + timedelta(seconds=4),
            "talk_seconds": 26,
        },
    ),
    (
        "blind transfer 101 -> 102",
        [
            leg(TRUNK, "PJSIP/101-2", "ANSWERED", 0, 10, answer=2, sequence=1),
            leg(TRUNK, "PJSIP/102-3", "ANSWERED", 10, 30, answer=10, sequence=2),
        ],
        {
            "answered_by": "101",
            "transfers": (Transfer("101", "102", "blind"),),
            "talked": ("101", "102"),
            "ended_at": T0 + timedelta(seconds=30),
        },
    ),
]


@pytest.mark.parametrize(("rows", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rules(rows: list[CdrRow], expected: dict[str, Any]) -> None:
    [call] = calls_from_cdr(rows, agent_of)
    got = {key: getattr(call, key) for key in expected}
    assert got == expected
    assert call.backfilled


def test_a_row_that_cannot_be_read_is_a_typed_error() -> None:
    [fields] = csv.reader(
        (FIXTURES / "ended-during-outage" / "cdr-custom.csv").read_text().splitlines()
    )
    with pytest.raises(BadCdrRow, match="21"):
        row_from_fields(fields[:18])
    with pytest.raises(BadCdrRow, match="start: not a time"):
        row_from_fields([*fields[:9], "yesterday", *fields[10:]])
    with pytest.raises(BadCdrRow, match="billsec: not a number"):
        row_from_fields([*fields[:13], "x", *fields[14:]])
    with pytest.raises(BadCdrRow, match="linkedid"):
        row_from_fields([*fields[:18], "", *fields[19:]])


def test_freepbx_rows_have_calldate_and_no_answer_or_end() -> None:
    row = row_from_mapping(
        {
            "calldate": datetime(2026, 12, 2, 2, 57, 31),
            "channel": TRUNK,
            "dstchannel": "PJSIP/101-00000001",
            "duration": 9,
            "billsec": 7,
            "disposition": "ANSWERED",
            "amaflags": 3,
            "linkedid": "1796180251.0",
            "sequence": 0,
        }
    )
    assert row.start == datetime(2026, 12, 2, 2, 57, 31, tzinfo=UTC)
    assert row.end == row.start + timedelta(seconds=9)
    assert row.answer == row.start + timedelta(seconds=2)
    assert row.amaflags == "3"
    unanswered = row_from_mapping({"calldate": "2026-12-02 02:57:31", "linkedid": "x"})
    assert unanswered.answer is None


def test_naive_times_are_read_in_the_given_zone() -> None:
    from zoneinfo import ZoneInfo

    [fields] = csv.reader(
        (FIXTURES / "ended-during-outage" / "cdr-custom.csv").read_text().splitlines()
    )
    row = row_from_fields(fields, ZoneInfo("Europe/Berlin"))
    assert row.start == datetime(2026, 12, 2, 1, 57, 31, tzinfo=UTC)
    mysql_never = row_from_mapping(
        {
            "start": "2026-12-02 02:57:31",
            "answer": "0000-00-00 00:00:00",
            "end": "2026-12-02 02:57:40",
            "linkedid": "x",
        }
    )
    assert mysql_never.answer is None
