"""Blind, attended and "blonde" transfers end to end: AMI socket -> tracker -> publisher.

Replayed through the replay server into the running daemon: the blonde transfer
recorded on Asterisk 22 (``transfers/blonde-transfer.ami``: 101 answers a
customer, starts an attended transfer to 103 and hangs up while 103 rings) and
the peer project's Asterisk 13-15 recordings (``peer/``). Each must log the
transfer with its target, push ``call.transferred`` to the agent handing over
and the one taking over (with the caller's card), and ``call.ended`` once.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.agents import add_agent
from core.db import create_engine, session_factory
from tests.integration.telephony_harness import CAPTURES, Daemon, Listener, running_daemon
from tests.peer_captures import ami_bytes, expected
from tests.waits import wait_until

BLONDE = CAPTURES / "transfers" / "blonde-transfer.ami"
# The peer's phones are SIP accounts with short numbers (150010003 is dialled as 203).
PEER_AGENTS = {
    "ann": ("150010001", "201"),
    "ben": ("150010002", "202"),
    "cid": ("150010003", "203"),
}
EXTENSIONS = {"alice": ("101",), "bob": ("102",), "carol": ("103",), **PEER_AGENTS}
PEER_TRANSFERS = [
    "xfer_blind/xfer_blind_abbcac.json",
    "queue/queue_blind_xfer.json",
    "xfer_attended/xfer_abacbc.json",
    "xfer_blonde/xfer_blonde_abacbc.json",
    "xfer_blonde/xfer_blonde_reject.json",
]


async def add_agents(daemon: Daemon, agents: dict[str, tuple[str, ...]]) -> None:
    """More agents, logged in (their tokens in ``daemon.tokens``)."""
    engine = create_engine(daemon.settings.database_url)
    async with session_factory(engine).begin() as session:
        for name, extensions in agents.items():
            await add_agent(session, name, f"{name}-password", list(extensions))
    await engine.dispose()
    for name in agents:
        payload = {"username": name, "password": f"{name}-password"}
        resp = await daemon.client.post("/api/login", json=payload)
        daemon.tokens[name] = (await resp.json())["token"]


def agent_named(extension: str) -> str | None:
    return next((name for name, exts in EXTENSIONS.items() if extension in exts), None)


async def logged_call(daemon: Daemon, linkedid: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def ended() -> bool:
        calls = (await daemon.api("/api/calls?limit=50"))["calls"]
        found[:] = [c for c in calls if c["linkedid"] == linkedid and c["ended_at"]]
        return bool(found)

    await wait_until(ended, what=f"call {linkedid} in the log")
    [call] = found
    return call


def no_recording_errors(caplog: pytest.LogCaptureFixture) -> None:
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures


async def check_transfer(
    listeners: dict[str, Listener], linkedid: str, transfer: dict[str, str], receiver: str
) -> None:
    """``call.transferred`` reached the agent handing over and the receiver, with the card."""
    transferer = agent_named(transfer["from"])
    assert transferer is not None
    for name in (transferer, receiver):
        [event] = [
            e
            for e in await listeners[name].wait_for("call.transferred")
            if e["call"]["linkedid"] == linkedid
        ]
        assert event["transfer"] == transfer
        assert event["agent"] == transfer["to"]
        assert event["call"]["transfers"][-1] == transfer
    [pop] = listeners[receiver].of("call.transferred")
    assert pop["card"]["number"]
    assert {"matches", "recent", "tasks"} <= set(pop["card"])


async def test_blonde_transfer_recorded_on_asterisk_22(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truth = json.loads(BLONDE.with_suffix(".truth.json").read_text())["calls"][0]
    async with (
        running_daemon(tmp_path) as daemon,
        daemon.listening("alice", "carol", "sue") as listeners,
    ):
        await daemon.pbx.replay(BLONDE)
        await listeners["sue"].wait_for("call.ended")
        call = await logged_call(daemon, truth["linkedid"])
        transfer = {"from": "101", "to": "103", "kind": "attended"}

        assert call["transfers"] == [transfer]
        assert call["answered_by"] == "101"
        assert set(call["agents_rung"]) == {"101", "103"}
        await check_transfer(listeners, truth["linkedid"], transfer, "carol")
        for name in ("alice", "carol", "sue"):
            ended = Counter(e["call"]["linkedid"] for e in listeners[name].of("call.ended"))
            assert ended == {truth["linkedid"]: 1}, name
    no_recording_errors(caplog)


@pytest.mark.parametrize("name", PEER_TRANSFERS)
async def test_peer_transfer_end_to_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    want = expected()[name]["calls"]
    data = ami_bytes(name)
    async with running_daemon(tmp_path) as daemon:
        await add_agents(daemon, PEER_AGENTS)
        async with daemon.listening(*PEER_AGENTS, "sue") as listeners:
            await daemon.pbx.replay(data)
            await listeners["sue"].wait_for("call.ended", len(want))
            transferred = [c for c in want if c["transfer_to"]]
            for wanted in transferred:
                call = await logged_call(daemon, wanted["linkedid"])
                [*_, transfer] = call["transfers"]
                assert transfer["to"] in [wanted["transfer_to"], *wanted.get("transfer_ok", [])]
                receiver = agent_named(transfer["to"])
                assert receiver is not None
                await check_transfer(listeners, wanted["linkedid"], transfer, receiver)
            ended = Counter(e["call"]["linkedid"] for e in listeners["sue"].of("call.ended"))
            assert ended == {c["linkedid"]: 1 for c in want}
    no_recording_errors(caplog)
