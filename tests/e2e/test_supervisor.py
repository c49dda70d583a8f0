"""The supervisor's wall (live calls, per-queue and per-agent figures from GET /api/wall,
agents by name with their state) checked against the call log, and the agent's hang-up
button on a pop, checked on the AMI wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from core.phones import display_number
from tests.e2e.conftest import SignIn, load_fresh, play
from tests.integration.telephony_harness import Daemon


def expected_figures(calls: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per queue/line [offered, answered, missed or abandoned] of ended inbound calls, and
    per agent [answered, missed], computed here from the call log."""
    figures: dict[str, list[int]] = {}
    for call in calls:
        if call["direction"] != "inbound" or call["status"] in ("ringing", "talking"):
            continue
        row = figures.setdefault(call["queue"] or call["did"], [0, 0, 0])
        row[0] += 1
        row[1] += call["status"] == "answered"
        row[2] += call["status"] in ("missed", "abandoned", "busy", "failed")
    return figures


async def shown_figures(page: Page) -> dict[str, list[int]]:
    rows = await page.eval_on_selector_all(
        ".wall-queues tbody tr",
        """rows => rows.map(r => [r.dataset.line, +r.querySelector('.offered').textContent,
            +r.querySelector('.answered').textContent, +r.querySelector('.missed').textContent])""",
    )
    return {line: [offered, answered, missed] for line, offered, answered, missed in rows}


async def test_wall_follows_calls_live_and_matches_call_log(
    daemon: Daemon, sign_in: SignIn, screenshots: Path
) -> None:
    patterns = daemon.settings.ami.agent_channel_patterns
    sue = await sign_in("sue")
    await expect(sue.get_by_role("heading", name="Supervisor wall")).to_be_visible()
    await expect(sue.get_by_text("No call right now.")).to_be_visible()

    await play(daemon, load_fresh("inbound-direct-missed", patterns).blocks)
    await expect(sue.locator(".wall-queues tr[data-line='5550101'] .missed")).to_have_text("1")
    region = daemon.settings.general.default_region  # the server formats numbers, not the page
    line = sue.locator(".wall-queues tr[data-line='5550101'] th")
    await expect(line).to_have_text(display_number("5550101", region))

    queue = load_fresh("queue-ringall-102-answers", patterns)
    await play(daemon, queue.ringing())
    live = sue.locator(".wall-live tbody tr")
    await expect(live).to_have_count(1)
    await expect(live.locator(".state")).to_have_text("ringing")
    await expect(live.locator(".agent")).to_have_text("alice, bob")  # names, not extensions
    await play(daemon, queue.talking())
    await expect(live.locator(".state")).to_have_text("talking")
    await expect(live.locator(".agent")).to_have_text("bob")
    await sue.screenshot(path=screenshots / "screenshot-wall.png", animations="disabled")
    await sue.emulate_media(color_scheme="dark")  # the system's dark mode
    await sue.screenshot(path=screenshots / "screenshot-wall-dark.png", animations="disabled")
    await sue.emulate_media(color_scheme="light")

    await play(daemon, queue.ending())
    await expect(sue.get_by_text("No call right now.")).to_be_visible()
    support = sue.locator(".wall-queues tr[data-line='support']")
    await expect(support.locator(".answered")).to_have_text("1")
    await expect(support.locator(".waiting")).to_have_text("0")  # from the PBX's queue events
    bob = sue.locator(".wall-agents tr[data-agent='102']")
    await expect(bob.locator("th")).to_have_text("bob (102)")
    await expect(bob.locator(".answered")).to_have_text("1")
    await expect(bob.locator(".state")).to_have_text("idle")  # a queue member, no call
    carol = sue.locator(".wall-agents tr[data-agent='103'] .state")
    await expect(carol).to_have_text("offline")  # in no queue

    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    log = await daemon.api(f"/api/calls?since={since:%Y-%m-%dT%H:%M:%SZ}&limit=500")
    assert len(log["calls"]) == 2
    assert await shown_figures(sue) == expected_figures(log["calls"])
    wall = await daemon.api("/api/wall")
    [row] = [q for q in wall["queues"] if q["line"] == "support"]
    assert row["offered"] == row["answered"] == 1 and row["abandon_rate"] == 0
    sl = await support.locator(".sl").get_attribute("data-ratio")
    assert float(sl or "nan") == row["service_level"]


async def test_wall_for_another_day_comes_from_the_summary(daemon: Daemon, sign_in: SignIn) -> None:
    await play(
        daemon,
        load_fresh("inbound-direct-missed", daemon.settings.ami.agent_channel_patterns).blocks,
    )
    sue = await sign_in("sue")
    await expect(sue.locator(".wall-agents tr[data-agent='101'] .missed")).to_have_text("1")
    yesterday = (datetime.now() - timedelta(days=1)).date().isoformat()
    async with sue.expect_response("**/api/wall?*") as response:
        await sue.get_by_label("Day").fill(yesterday)
    assert (await response.value).ok
    await expect(sue.locator(".wall-agents tr[data-agent='101'] .missed")).to_have_text("0")
    await expect(sue.locator(".wall-live")).to_be_hidden()
    await sue.get_by_label("Day").fill(datetime.now().date().isoformat())
    await expect(sue.locator(".wall-agents tr[data-agent='101'] .missed")).to_have_text("1")


async def test_hang_up_button_sends_hangup_for_the_agents_own_channel(
    daemon: Daemon, sign_in: SignIn
) -> None:
    queue = load_fresh("queue-ringall-102-answers", daemon.settings.ami.agent_channel_patterns)
    bridged = next(
        i
        for i, block in enumerate(queue.blocks)
        if block.fields.get("Event") == "BridgeEnter"
        and block.fields["Channel"].startswith("PJSIP/carrier-")
    )
    bob = await sign_in("bob")
    await play(daemon, queue.blocks[: bridged + 1])
    pop = bob.locator("#pops .pop")
    await expect(pop).to_have_attribute("data-state", "talking")
    await pop.get_by_role("button", name="Hang up").click()
    hangup_sent = lambda: any(a.fields.get("Action") == "Hangup" for a in daemon.pbx.actions)  # noqa: E731
    await daemon.pbx.wait_for(hangup_sent, what="a Hangup action")
    hangups = [a.fields for a in daemon.pbx.actions if a.fields.get("Action") == "Hangup"]
    [hangup] = hangups
    assert hangup["Channel"].startswith("PJSIP/102-") and hangup["Cause"] == "16"
    await play(daemon, queue.blocks[bridged + 1 :])  # the PBX hangs up, as recorded
    await expect(pop).to_have_attribute("data-state", "ended")
    await expect(pop.locator(".controls")).to_have_count(0)
