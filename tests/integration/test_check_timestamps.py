"""check-config tells whether the PBX stamps its events (manager.conf timestampevents)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmcomms.ami.client import AmiClient
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.ami.stamps import UNSTAMPED
from crmcomms.checks import run_checks
from crmcomms.config import Settings
from tests.conftest import make_settings
from tests.integration.telephony_harness import CAPTURES
from tests.integration.test_ami_client import Inbox, file_events, running


def _settings(tmp_path: Path, pbx: AmiReplayServer) -> Settings:
    return make_settings(tmp_path, ami={"enabled": True, "port": pbx.port, "secret": "crmsecret"})


async def _ami_lines(tmp_path: Path, pbx: AmiReplayServer) -> list[str]:
    lines: list[str] = []
    await run_checks(_settings(tmp_path, pbx), lines.append)
    return [line for line in lines if " ami:" in line or line.endswith(" ami")]


async def test_unstamped_events_fail_the_check_naming_the_manager_conf_line(
    tmp_path: Path,
) -> None:
    async with AmiReplayServer(login_events=True, timestamp_events=False) as pbx:
        lines = await _ami_lines(tmp_path, pbx)
    assert len(lines) == 1
    assert lines[0].startswith("FAIL ami: timestampevents is off")
    assert "every time would be unknown" in lines[0]
    assert "timestampevents = yes in the [general] section of manager.conf" in lines[0]


async def test_stamped_events_pass(tmp_path: Path) -> None:
    async with AmiReplayServer(login_events=True) as pbx:
        assert await _ami_lines(tmp_path, pbx) == ["ok   ami"]


async def test_no_event_during_the_check_is_said_not_guessed(tmp_path: Path) -> None:
    async with AmiReplayServer() as pbx:  # a user without read=security on an idle PBX
        lines = await _ami_lines(tmp_path, pbx)
    assert lines[0] == "ok   ami"
    assert lines[1].startswith("note ami: could not tell whether the PBX stamps its events")
    assert "timestampevents = yes" in lines[1]


@pytest.mark.parametrize("stamped", [True, False])
async def test_replay_server_can_play_timestampevents_off(tmp_path: Path, stamped: bool) -> None:
    capture = CAPTURES / "inbound-direct-busy.ami"
    inbox = Inbox()
    async with AmiReplayServer(timestamp_events=stamped) as pbx:
        async with running(AmiClient(_settings(tmp_path, pbx).ami, inbox)):
            await pbx.wait_logged_in(1)
            await pbx.replay(capture)
            await inbox.wait_count(len(file_events(capture)))
    events = [m for m in inbox.messages if m["Event"] not in UNSTAMPED]
    assert events and all(("Timestamp" in m) is stamped for m in events)
