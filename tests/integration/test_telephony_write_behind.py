"""Intermediate call states are written behind, within a short bounded delay."""

from __future__ import annotations

from pathlib import Path

from crmcomms.ami.capture import load_capture
from crmcomms.telephony.calls import CallAnswered
from crmcomms.telephony.tracker import CallTracker
from tests.ami_edge import feed
from tests.integration.telephony_harness import CAPTURES, running_daemon

SCENARIO = "inbound-direct-answered"


async def test_answered_call_shows_talking_in_the_log_soon(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        blocks = load_capture(CAPTURES / f"{SCENARIO}.ami")
        tracker = CallTracker(daemon.settings.ami.agent_channel_patterns)
        answered = next(
            index
            for index, block in enumerate(blocks)
            if any(isinstance(e, CallAnswered) for e in feed(tracker, [block.fields]))
        )
        async with daemon.listening("sue") as listeners:
            await daemon.pbx.replay(blocks[:answered])
            await listeners["sue"].wait_for("call.ringing")  # recorded: the answer is not new
            await daemon.pbx.replay(blocks[answered : answered + 1])
            await listeners["sue"].wait_for("call.answered")
            daemon.sent += sum(1 for b in blocks[: answered + 1] if "Event" in b.fields)
            await daemon.settle(timeout=1)  # write-behind: recorded well under a second
            [call] = (await daemon.api("/api/calls"))["calls"]
            assert call["status"] == "talking"
            detail = await daemon.api(f"/api/calls/{call['id']}")
            assert detail["status"] == "talking"
