"""Call controls, queue presence and the wall's summary over HTTP, against the daemon and
the AMI replay server (the actions it received are checked as sent on the wire)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

import core.agents
from crmcomms.ami.capture import CaptureBlock, load_capture
from crmcomms.keys import TELEPHONY
from tests.integration.telephony_harness import CAPTURES, Daemon, running_daemon


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(core.agents, "_hasher", lambda: cheap)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path) as running:
        yield running


def split_at_talk(scenario: str, gone: str, bridged: str) -> tuple[list[Any], list[Any]]:
    """The capture up to the hangup of channel ``gone...`` and the bridging of
    ``bridged...``, and the rest."""
    blocks: list[CaptureBlock] = load_capture(CAPTURES / f"{scenario}.ami")
    waiting = {("Hangup", gone), ("BridgeEnter", bridged)}
    for index, block in enumerate(blocks):
        fields = block.fields
        waiting -= {(fields.get("Event"), fields.get("Channel", "")[: len(gone)])}
        waiting -= {(fields.get("Event"), fields.get("Channel", "")[: len(bridged)])}
        if not waiting:
            return blocks[: index + 1], blocks[index + 1 :]
    raise AssertionError(f"{scenario}: {waiting} never seen")


async def play(daemon: Daemon, blocks: list[CaptureBlock]) -> None:
    await daemon.pbx.replay(blocks)
    daemon.sent += sum(1 for block in blocks if "Event" in block.fields)
    await daemon.settle()


async def post(daemon: Daemon, path: str, name: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {daemon.tokens[name]}"}
    resp = await daemon.client.post(path, json=body or {}, headers=headers)
    return resp.status, await resp.json()


def sent(daemon: Daemon, action: str) -> list[dict[str, str]]:
    """The actions of that name the PBX received, without the client's ActionID."""
    return [
        {k: v for k, v in a.fields.items() if k != "ActionID"}
        for a in daemon.pbx.actions
        if a.fields.get("Action") == action
    ]


async def live_call_id(daemon: Daemon) -> int:
    calls = (await daemon.api("/api/calls?status=talking"))["calls"]
    assert len(calls) == 1, calls
    return int(calls[0]["id"])


async def test_controls_act_only_on_the_agents_own_channel(daemon: Daemon) -> None:
    talking, ending = split_at_talk("queue-ringall-102-answers", "PJSIP/101-", "PJSIP/carrier-")
    await play(daemon, talking)
    call = await live_call_id(daemon)
    legs = daemon.client.app[TELEPHONY].controls.legs
    [lid] = [c.linkedid for c in daemon.client.app[TELEPHONY].active_calls()]
    bob_leg = next(leg for leg in legs(lid) if leg.agent == "102")
    peer = next(leg.name for leg in legs(lid) if leg.bridge == bob_leg.bridge and leg != bob_leg)

    # carol was never on it: 403; alice rang but her phone left the call: 409
    assert (await post(daemon, f"/api/calls/{call}/hangup", "carol"))[0] == 403
    assert (await post(daemon, f"/api/calls/{call}/hangup", "alice"))[0] == 409
    assert (await post(daemon, f"/api/calls/{call}/transfer", "bob", {"to": "1 0"}))[0] == 422

    status, body = await post(daemon, f"/api/calls/{call}/hold", "bob")
    assert (status, body["message"]) == (202, "Redirect successful")
    assert (await post(daemon, f"/api/calls/{call}/hold", "bob"))[0] == 409  # already held
    held = lambda body: [agent["held"] for agent in body["agents"]]  # noqa: E731
    assert held(await daemon.api("/api/presence", "bob")) == [[lid]]  # the page's truth
    assert (await post(daemon, f"/api/calls/{call}/resume", "bob"))[0] == 202
    assert held(await daemon.api("/api/presence", "bob")) == [[]]
    assert sent(daemon, "Redirect") == [
        {
            "Action": "Redirect",
            "Channel": peer,
            "ExtraChannel": bob_leg.name,
            "Exten": "s",
            "ExtraExten": "agent",
            "Context": "crm-hold",
            "ExtraContext": "crm-hold",
            "Priority": "1",
            "ExtraPriority": "1",
        }
    ]
    assert sent(daemon, "Bridge") == [
        {"Action": "Bridge", "Channel1": bob_leg.name, "Channel2": peer, "Tone": "no"}
    ]

    transfer = f"/api/calls/{call}/transfer"
    assert (await post(daemon, transfer, "bob", {"to": "103"}))[0] == 202
    assert (await post(daemon, transfer, "bob", {"to": "support", "queue": True}))[0] == 202
    assert (await post(daemon, transfer, "bob", {"to": "103", "kind": "attended"}))[0] == 202
    assert (await post(daemon, f"{transfer}/cancel", "bob"))[0] == 202
    assert sent(daemon, "BlindTransfer") == [
        {"Action": "BlindTransfer", "Channel": bob_leg.name, "Context": "from-internal", "Exten": e}
        for e in ("103",)
    ] + [
        {
            "Action": "BlindTransfer",
            "Channel": bob_leg.name,
            "Context": "crm-queues",
            "Exten": "support",
        }
    ]
    assert sent(daemon, "Atxfer") == [
        {"Action": "Atxfer", "Channel": bob_leg.name, "Exten": "103", "Context": "from-internal"}
    ]
    assert sent(daemon, "CancelAtxfer") == [{"Action": "CancelAtxfer", "Channel": bob_leg.name}]

    status, body = await post(daemon, f"/api/calls/{call}/hangup", "bob")
    assert (status, body["message"]) == (202, "Channel Hungup")
    assert sent(daemon, "Hangup") == [{"Action": "Hangup", "Channel": bob_leg.name, "Cause": "16"}]

    await play(daemon, ending)  # the recorded end of the call
    assert (await post(daemon, f"/api/calls/{call}/hangup", "bob"))[0] == 409  # not in progress


async def test_pause_presence_and_queue_status_after_login(daemon: Daemon) -> None:
    # nobody is a queue member yet: pausing is refused
    assert (await post(daemon, "/api/presence", "alice", {"paused": True}))[0] == 409
    daemon.pbx.queue_items = [
        {"Event": "QueueParams", "Queue": "support", "Calls": "0"},
        {
            "Event": "QueueMember",
            "Queue": "support",
            "Name": "Alice Agent",
            "Location": "PJSIP/101",
            "StateInterface": "PJSIP/101",
            "LoginTime": "1795758467",
            "Status": "1",
            "Paused": "0",
            "PausedReason": "",
            "InCall": "0",
        },
    ]
    telephony = daemon.client.app[TELEPHONY]
    await daemon.pbx.drop_clients()  # the next login reads the queues
    await daemon.pbx.wait_logged_in(2)
    await daemon.pbx.wait_for(lambda: len(sent(daemon, "QueueStatus")) >= 2)
    async with asyncio.timeout(5):
        while not telephony.presence.presence.members_of("101"):
            telephony.progress.clear()
            await telephony.progress.wait()

    mine = await daemon.api("/api/presence", "alice")
    assert mine["agents"][0]["state"] == "idle"
    assert mine["agents"][0]["queues"][0]["queue"] == "support"

    body = {"paused": True, "reason": "lunch"}
    assert (await post(daemon, "/api/presence", "alice", body))[0] == 202
    assert sent(daemon, "QueuePause") == [
        {"Action": "QueuePause", "Interface": "PJSIP/101", "Paused": "true", "Reason": "lunch"}
    ]
    # the pause shows only once Asterisk says so
    assert (await daemon.api("/api/presence", "alice"))["agents"][0]["state"] == "idle"
    event = (
        "Event: QueueMemberPause\r\nQueue: support\r\nMemberName: Alice Agent\r\n"
        "Interface: PJSIP/101\r\nStateInterface: PJSIP/101\r\nStatus: 1\r\nPaused: 1\r\n"
        "PausedReason: lunch\r\nInCall: 0\r\nLoginTime: 1795758467\r\n\r\n"
    )
    async with daemon.listening("alice") as listeners:
        await listeners["alice"].wait_for("hello")
        await play(daemon, load_capture(event.encode()))
        [changed] = await listeners["alice"].wait_for("presence.changed")
    assert changed["agent"]["state"] == "paused"
    wall = await daemon.api("/api/wall")
    alice = next(a for a in wall["agents"] if a["extension"] == "101")
    assert alice["name"] == "alice" and alice["presence"]["state"] == "paused"

    # a queue call's JSON carries the queue's members as the PBX last reported them
    # while it is live; a logged call read back does not pretend to know them
    async with daemon.listening("alice") as listeners:
        await listeners["alice"].wait_for("hello")
        await daemon.replay("queue-ringall-102-answers")
        [ringing] = await listeners["alice"].wait_for("call.ringing")
        await listeners["alice"].wait_for("call.ended")  # logged by then
    members = {m["extension"]: m for m in ringing["call"]["queue_members"]}
    member = members["101"]
    assert member["queue"] == "support"
    # the capture's own QueueMemberStatus for 101 (Paused: 0) arrives before the ring:
    # the PBX's last word, not the pause set above, is what the call shows
    assert (member["paused"], member["paused_reason"]) == (False, None)
    assert set(members) == {"101", "102"}
    logged = await daemon.api(f"/api/calls/{ringing['call']['id']}", "alice")
    assert logged["queue_members"] is None
