"""End to end: recorded AMI streams over a real socket -> daemon -> database -> websockets.

Every capture recorded from a real Asterisk is replayed through the replay
server into the running daemon; the call log and the events each agent's
websocket receives are checked against the capture's ``.json`` facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmcomms.keys import TELEPHONY
from crmcomms.pbx_events import DialEnd
from tests.conftest import PostgresServer
from tests.integration.telephony_harness import CAPTURES, Daemon, facts, running_daemon

QUEUE = "queue-ringall-102-answers"
SCENARIOS = sorted(p.stem for p in CAPTURES.glob("*.ami"))
EXPECTED_STATUS = {
    "inbound-direct-answered": "answered",
    "inbound-direct-missed": "missed",
    "inbound-direct-busy": "busy",
    "queue-ringall-102-answers": "answered",
    "outbound-answered": "answered",
    "internal-101-to-102": "answered",
    "click-to-dial": "answered",
}
EXPECTED_CONTACT = {
    "inbound-direct-answered": "+493012345678",
    "inbound-direct-missed": "01715550123",
    "inbound-direct-busy": "089 12345678",
    "queue-ringall-102-answers": "040 123456",
    "outbound-answered": "+49 30 123456",
    "click-to-dial": "0171 5559876",
}
NAMES = {"101": "alice", "102": "bob", "103": "carol"}


async def _one_call(daemon: Daemon) -> dict[str, Any]:
    calls = (await daemon.api("/api/calls"))["calls"]
    assert len(calls) == 1, calls
    return calls[0]


def _assert_call_matches_facts(call: dict[str, Any], scenario: str, daemon: Daemon) -> None:
    truth = facts(scenario)
    assert call["linkedid"] == truth["linkedid"]
    assert call["direction"] == truth["direction"]
    assert call["status"] == EXPECTED_STATUS[scenario]
    assert set(call["agents_rung"]) >= set(truth["agents_rung"])
    if truth["direction"] == "inbound":
        assert call["caller"] == truth["caller_number"]
        assert call["did"] == truth["dialed_number"]
        assert call["answered_by"] == truth["answered_by"]
    else:
        assert call["callee"] == truth["dialed_number"]
    if truth["direction"] == "internal":
        assert call["caller"] == "101" and call["answered_by"] == "102"
    recording = call["recording_url"]
    assert (recording is not None) == bool(truth["recorded"])
    # click-to-dial rings the agent's phone first, then the customer: both count
    if "ring_seconds" in truth:
        ring = truth["ring_seconds"]
    else:
        ring = truth["ring_seconds_agent"] + truth["ring_seconds_external"]
    assert abs(call["ring_seconds"] - ring) <= 1.5, (call["ring_seconds"], ring)
    assert abs(call["talk_seconds"] - truth["talk_seconds"]) <= 1.5
    assert call["ended_at"] is not None and call["started_at"] <= call["ended_at"]
    if scenario in EXPECTED_CONTACT:
        assert call["contacts"] == [daemon.contact_ids[EXPECTED_CONTACT[scenario]]]
    else:
        assert call["contacts"] == []


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_capture_end_to_end(tmp_path: Path, scenario: str) -> None:
    async with (
        running_daemon(tmp_path) as daemon,
        daemon.listening("alice", "bob", "carol", "sue") as listeners,
    ):
        await daemon.replay(scenario)
        await listeners["sue"].wait_for("call.ended")
        await daemon.settle()
        call = await _one_call(daemon)
        _assert_call_matches_facts(call, scenario, daemon)
        truth = facts(scenario)
        for ext in truth["agents_rung"]:
            agent = listeners[NAMES[ext]]
            kinds = [kind for kind in agent.kinds() if kind.startswith("call.")]
            if scenario == "inbound-direct-busy":  # the phone refused at once: it never rang
                assert kinds == ["call.ended"]
                continue
            assert kinds[0] == "call.ringing", kinds
            assert kinds[-1] == "call.ended", kinds
            ringing = agent.of("call.ringing")[0]
            assert ringing["agent"] == ext
            assert ringing["call"]["linkedid"] == truth["linkedid"]
            if scenario in EXPECTED_CONTACT and truth["direction"] == "inbound":
                card = ringing["card"]
                ids = [m["id"] for m in card["matches"]]
                assert ids == [daemon.contact_ids[EXPECTED_CONTACT[scenario]]]
        involved = set(truth["agents_rung"]) | {truth.get("agent"), truth.get("caller_number")}
        if "103" not in involved:
            assert listeners["carol"].kinds() == []


async def test_queue_pop_withdrawn_from_the_loser(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.listening("alice", "bob") as agents:
        alice, bob = agents["alice"], agents["bob"]
        await daemon.replay("queue-ringall-102-answers")
        await bob.wait_for("call.ended")
        await alice.wait_for("call.ended")
        assert bob.kinds() == ["call.ringing", "call.answered", "call.ended"]
        assert alice.kinds()[0] == "call.ringing"
        assert "call.ring_stopped" in alice.kinds() or "call.answered" in alice.kinds()
        ringing = bob.of("call.ringing")[0]
        assert ringing["call"]["queue"] == "support"
        assert ringing["card"]["matches"][0]["display_name"].startswith("Hanna")
        answered = bob.of("call.answered")[0]
        assert answered["call"]["answered_by"] == "102"
        organization = ringing["card"]["matches"][0]["organization"]["id"]
        timeline = await daemon.api(f"/api/organizations/{organization}/history", "bob")
        assert [item["kind"] for item in timeline["items"]] == ["call"]
        seqs = [e["seq"] for e in bob.events if e["type"] != "hello"]
        assert seqs == sorted(seqs)


async def test_same_stream_twice_gives_one_call(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        await daemon.replay("inbound-direct-answered")
        await daemon.settle()
        await daemon.replay("inbound-direct-answered")
        await daemon.settle()
        call = await _one_call(daemon)
        assert call["status"] == "answered"


async def test_missed_call_creates_one_callback_task(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.listening("alice") as agents:
        alice = agents["alice"]
        await daemon.replay("inbound-direct-missed")
        task_event = (await alice.wait_for("task.created"))[0]
        assert task_event["task"]["task_kind"] == "callback"
        assert task_event["task"]["number"] == "01715550123"
        assert task_event["task"]["assignees"] == ["101"]
        contact = daemon.contact_ids["01715550123"]
        history = await daemon.api(f"/api/contacts/{contact}/history", "alice")
        kinds = sorted(item["kind"] for item in history["items"])
        assert kinds == ["call", "task"]


async def test_agent_sees_only_own_calls(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        await daemon.replay("internal-101-to-102")
        await daemon.settle()
        assert len((await daemon.api("/api/calls", "bob"))["calls"]) == 1
        assert (await daemon.api("/api/calls", "carol"))["calls"] == []
        call = await _one_call(daemon)
        headers = {"Authorization": f"Bearer {daemon.tokens['carol']}"}
        resp = await daemon.client.get(f"/api/calls/{call['id']}", headers=headers)
        assert resp.status == 403


@pytest.mark.postgres
async def test_queue_call_on_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.create_database("telephony")
    async with (
        running_daemon(tmp_path, database_url=url) as daemon,
        daemon.listening("bob") as listeners,
    ):
        await daemon.replay(QUEUE)
        await listeners["bob"].wait_for("call.ended")
        await daemon.settle()
        call = await _one_call(daemon)
        _assert_call_matches_facts(call, QUEUE, daemon)
        ringing = listeners["bob"].of("call.ringing")[0]
        assert ringing["card"]["matches"][0]["organization"]["name"] == "Hansen Logistik"
        await daemon.replay(QUEUE)
        await daemon.settle()
        assert len((await daemon.api("/api/calls"))["calls"]) == 1


async def test_an_item_that_breaks_the_tracker_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One event the tracker cannot handle is logged with its identity and skipped;
    the worker goes on and the call is still logged from the other events."""
    async with running_daemon(tmp_path) as daemon:
        telephony = daemon.client.app[TELEPHONY]
        feed = telephony.tracker.feed

        def breaking(message: Any) -> Any:
            if isinstance(message, DialEnd):
                raise RuntimeError("a tracker bug")
            return feed(message)

        telephony.tracker.feed = breaking  # type: ignore[method-assign]
        await daemon.replay("inbound-direct-answered")
        await daemon.settle()
        call = await _one_call(daemon)
    assert call["status"] == "answered"
    assert telephony.failed_items >= 1
    assert "skipped an AMI item the tracker could not handle: Event=DialEnd" in caplog.text
