"""The AMI link under stress, through the running daemon: cuts, garbage, click-to-dial,
recordings, health, metrics and check-config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crmcomms.ami.capture import load_capture
from crmcomms.checks import check_ami
from crmcomms.keys import TELEPHONY
from tests.conftest import make_settings
from tests.integration.telephony_harness import CAPTURES, Daemon, running_daemon

QUEUE = "queue-ringall-102-answers"


def _halves(scenario: str, cut_after: str) -> tuple[list, list]:  # type: ignore[type-arg]
    """The capture's blocks split after the first event named ``cut_after``."""
    blocks = load_capture(CAPTURES / f"{scenario}.ami")
    index = next(i for i, b in enumerate(blocks) if b.fields.get("Event") == cut_after)
    return blocks[: index + 1], blocks[index + 1 :]


async def _reconnected(daemon: Daemon, logins: int) -> None:
    await daemon.pbx.wait_logged_in(logins, within=10)
    await daemon.pbx.wait_for(
        lambda: any(a.fields.get("Action") == "CoreShowChannels" for a in daemon.pbx.actions[-3:]),
        within=10,
        what="CoreShowChannels after the reconnect",
    )


async def _events(blocks: list) -> int:  # type: ignore[type-arg]
    return sum(1 for b in blocks if "Event" in b.fields)


async def test_link_cut_mid_call_then_call_continues(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        first, rest = _halves(QUEUE, "AgentConnect")
        await daemon.pbx.replay(first)
        daemon.sent += await _events(first)
        await daemon.settle()
        await daemon.pbx.drop_clients()
        await _reconnected(daemon, 2)
        await daemon.pbx.replay(rest)
        daemon.sent += await _events(rest)
        await daemon.settle()
        calls = (await daemon.api("/api/calls"))["calls"]
        assert len(calls) == 1
        assert calls[0]["status"] == "answered" and calls[0]["answered_by"] == "102"
        assert calls[0]["talk_seconds"] >= 4


async def test_call_that_ends_while_the_link_is_down_is_logged_once(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.listening("sue") as listeners:
        first, rest = _halves(QUEUE, "AgentConnect")
        await daemon.pbx.replay(first)
        daemon.sent += await _events(first)
        await daemon.settle()
        await daemon.pbx.drop_clients()
        for block in rest:  # the PBX goes on without us: the call ends unseen
            daemon.pbx.channels.apply(block.fields)
        await _reconnected(daemon, 2)
        await listeners["sue"].wait_for("call.ended")
        calls = (await daemon.api("/api/calls"))["calls"]
        assert len(calls) == 1
        # ended unseen, without [cdr]: its end is unknown, never the reconnect time
        assert calls[0]["status"] == "answered" and calls[0]["ended_at"] is None
        assert calls[0]["times_uncertain"] and calls[0]["talk_seconds"] is None
        assert daemon.client.app[TELEPHONY].tracker.active_calls() == []


async def test_garbage_and_truncated_blocks_are_counted_and_skipped(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        first, rest = _halves("inbound-direct-answered", "DialBegin")
        await daemon.pbx.replay(first)
        await daemon.pbx.send_raw(b"this is not AMI at all\r\n\r\nEvent: Hangup\r\nChannel\r\n\r\n")
        await daemon.pbx.send_raw(b"Event: Newstate\r\nPrivilege: call,all\r\n\r\n")
        await daemon.pbx.replay(rest)
        daemon.sent += await _events(first) + await _events(rest) + 1
        await daemon.settle()
        calls = (await daemon.api("/api/calls"))["calls"]
        assert [c["status"] for c in calls] == ["answered"]
        resp = await daemon.client.get("/metrics")
        metrics = await resp.text()
        assert "crmcomms_ami_malformed_total 3.0" in metrics
        assert "crmcomms_ami_queue_depth 0.0" in metrics
        assert 'crmcomms_calls_total{status="answered"} 1.0' in metrics


async def test_click_to_dial_originates_from_own_extension(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, originate_context="from-agents") as daemon:
        headers = {"Authorization": f"Bearer {daemon.tokens['alice']}"}
        body = {"to": "+49 171 5559876"}
        resp = await daemon.client.post("/api/calls", json=body, headers=headers)
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["dialled"] == "01715559876"
        [originate] = _originates(daemon)
        assert originate == {
            "Action": "Originate",
            "Channel": "PJSIP/101",
            "Context": "from-agents",
            "Exten": "01715559876",
            "Priority": "1",
            "Timeout": "30000",
            "Async": "true",
            "Variable": (
                "CRM_DIAL_NUMBER=01715559876,CRM_CUSTOMER_NUMBER=+491715559876,"
                "CONNECTEDLINE(num,i)=01715559876,CONNECTEDLINE(name,i)=CRM: 01715559876"
            ),
        }
        headers = {"Authorization": f"Bearer {daemon.tokens['sue']}"}
        resp = await daemon.client.post("/api/calls", json={"to": "0171 5559876"}, headers=headers)
        assert resp.status == 422 and "extension" in (await resp.json())["error"]
        resp = await daemon.client.post("/api/calls", json={"to": "call me"}, headers=headers)
        assert resp.status == 422


async def test_click_to_dial_presents_the_company_cli(tmp_path: Path) -> None:
    cli = {"outbound_callerid": "+4930555010", "outbound_callerid_name": "ACME Support"}
    async with running_daemon(tmp_path, originate_context="from-agents", **cli) as daemon:
        headers = {"Authorization": f"Bearer {daemon.tokens['alice']}"}
        resp = await daemon.client.post("/api/calls", json={"to": "030 1234567"}, headers=headers)
        assert resp.status == 202, await resp.text()
        [originate] = _originates(daemon)
        assert "CallerID" not in originate  # it would also be the carrier's From
        assert originate["Variable"] == (
            "CRM_DIAL_NUMBER=0301234567,CRM_CUSTOMER_NUMBER=+49301234567,"
            "CONNECTEDLINE(num,i)=0301234567,CONNECTEDLINE(name,i)=CRM: 0301234567,"
            "CRM_OUTBOUND_CLI=+4930555010,CALLERID(num)=+4930555010,CALLERID(name)=ACME Support"
        )


def _originates(daemon: Daemon) -> list[dict[str, str]]:
    """The Originate actions the replay server received, without their ActionID."""
    found = [dict(a.fields) for a in daemon.pbx.actions if a.fields["Action"] == "Originate"]
    for fields in found:
        assert fields.pop("ActionID")
    return found


async def test_click_to_dial_with_link_down_is_503(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        client = daemon.client.app[TELEPHONY].client
        await daemon.pbx.stop()
        async with asyncio.timeout(10):
            while client.connected:
                client.link_changed.clear()
                await client.link_changed.wait()
        headers = {"Authorization": f"Bearer {daemon.tokens['alice']}"}
        resp = await daemon.client.post("/api/calls", json={"to": "030 1234567"}, headers=headers)
        assert resp.status == 503
        health = await (await daemon.client.get("/healthz")).json()
        assert health["components"]["ami"]["state"] == "down"


async def test_recording_streams_with_range_to_allowed_agents(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        await daemon.replay(QUEUE)
        await daemon.settle()
        call = (await daemon.api("/api/calls"))["calls"][0]
        url = call["recording_url"]
        assert url == f"/api/calls/{call['id']}/recording"
        bob = {"Authorization": f"Bearer {daemon.tokens['bob']}"}
        assert (await daemon.client.get(url, headers=bob)).status == 404  # not on disk yet
        recordings = Path(daemon.settings.ami.recordings_dir)
        recordings.mkdir(parents=True)
        (recordings / "1795758716.34.wav").write_bytes(b"RIFF" + bytes(range(200)))
        resp = await daemon.client.get(url, headers={**bob, "Range": "bytes=4-13"})
        assert resp.status == 206
        assert await resp.read() == bytes(range(10))
        assert resp.headers["Content-Range"] == "bytes 4-13/204"
        carol = {"Authorization": f"Bearer {daemon.tokens['carol']}"}
        assert (await daemon.client.get(url, headers=carol)).status == 403
        assert (await daemon.client.get(f"{url}?token={daemon.tokens['sue']}")).status == 401
        sue = {"Authorization": f"Bearer {daemon.tokens['sue']}"}
        signed = await daemon.client.post("/api/media-urls", json={"paths": [url]}, headers=sue)
        resp = await daemon.client.get((await signed.json())["urls"][0])  # no token in the URL
        assert resp.status == 200 and len(await resp.read()) == 204


async def test_check_config_tries_the_ami_login(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        good = daemon.settings
        assert await check_ami(good) is None
        bad = make_settings(
            tmp_path, ami={"enabled": True, "port": daemon.pbx.port, "secret": "wrong"}
        )
        problem = await check_ami(bad)
        assert problem is not None and "Authentication failed" in problem
        assert "wrong" not in problem
        daemon.pbx.denied.add("coreshowchannels")  # an AMI user without write=reporting
        problem = await check_ami(good)
        assert problem == (
            "ami: CoreShowChannels refused: Permission denied "
            "(check the write= classes of the AMI user)"
        )


@pytest.mark.parametrize("port_kind", ["closed"])
async def test_check_config_reports_unreachable_pbx(tmp_path: Path, port_kind: str) -> None:
    from tests.conftest import free_port

    settings = make_settings(tmp_path, ami={"enabled": True, "port": free_port()})
    problem = await check_ami(settings)
    assert problem is not None and "refused" in problem.lower()
