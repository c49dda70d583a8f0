"""The supervisor's wall, live from the websocket, checked against the call log."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.e2e.conftest import SignIn, load_fresh, play
from tests.integration.telephony_harness import Daemon


def expected_figures(calls: list[dict[str, Any]]) -> tuple[Counter[str], dict[str, list[int]]]:
    """Missed per queue/line and per-agent [answered, missed, talk seconds] from the log."""
    missed: Counter[str] = Counter()
    agents: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for call in calls:
        if call["status"] in ("missed", "abandoned") and call["direction"] == "inbound":
            missed[call["queue"] or call["did"]] += 1
            for ext in call["agents_rung"]:
                agents[ext][1] += 1
        if call["status"] == "answered" and call["answered_by"]:
            agents[call["answered_by"]][0] += 1
            agents[call["answered_by"]][2] += call["talk_seconds"]
    return missed, dict(agents)


async def shown_figures(page: Page) -> tuple[Counter[str], dict[str, list[int]]]:
    missed = await page.eval_on_selector_all(
        ".wall-missed tbody tr", "rows => rows.map(r => [r.dataset.line, r.cells[1].textContent])"
    )
    agents = await page.eval_on_selector_all(
        ".wall-agents tbody tr",
        """rows => rows.map(r => [r.dataset.agent, +r.querySelector('.answered').textContent,
            +r.querySelector('.missed').textContent, +r.querySelector('.talk').dataset.seconds])""",
    )
    return Counter({line: int(n) for line, n in missed}), {a: [x, y, z] for a, x, y, z in agents}


async def test_wall_follows_calls_live_and_matches_call_log(
    daemon: Daemon, sign_in: SignIn, screenshots: Path
) -> None:
    patterns = daemon.settings.ami.agent_channel_patterns
    sue = await sign_in("sue")
    await expect(sue.get_by_role("heading", name="Supervisor wall")).to_be_visible()
    await expect(sue.get_by_text("No call right now.")).to_be_visible()

    await play(daemon, load_fresh("inbound-direct-missed", patterns).blocks)
    await expect(sue.locator(".wall-missed tr[data-line='5550101'] td")).to_have_text("1")

    queue = load_fresh("queue-ringall-102-answers", patterns)
    await play(daemon, queue.ringing())
    live = sue.locator(".wall-live tbody tr")
    await expect(live).to_have_count(1)
    await expect(live.locator(".state")).to_have_text("ringing")
    await expect(live.locator(".agent")).to_have_text("101, 102")
    await play(daemon, queue.talking())
    await expect(live.locator(".state")).to_have_text("talking")
    await expect(live.locator(".agent")).to_have_text("102")
    await sue.screenshot(path=screenshots / "screenshot-wall.png", animations="disabled")

    await play(daemon, queue.ending())
    await expect(sue.get_by_text("No call right now.")).to_be_visible()
    await expect(sue.locator(".wall-agents tr[data-agent='102'] .answered")).to_have_text("1")
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    log = await daemon.api(f"/api/calls?since={since:%Y-%m-%dT%H:%M:%SZ}&limit=500")
    assert len(log["calls"]) == 2
    assert await shown_figures(sue) == expected_figures(log["calls"])


async def test_wall_for_another_day_comes_from_the_api(daemon: Daemon, sign_in: SignIn) -> None:
    await play(
        daemon,
        load_fresh("inbound-direct-missed", daemon.settings.ami.agent_channel_patterns).blocks,
    )
    sue = await sign_in("sue")
    await expect(sue.locator(".wall-agents tr[data-agent='101'] .missed")).to_have_text("1")
    yesterday = (datetime.now() - timedelta(days=1)).date().isoformat()
    async with sue.expect_response("**/api/calls?*") as response:
        await sue.get_by_label("Day").fill(yesterday)
    assert (await response.value).ok
    await expect(sue.locator(".wall-agents tbody tr")).to_have_count(0)
    await expect(sue.locator(".wall-live")).to_be_hidden()
    await sue.get_by_label("Day").fill(datetime.now().date().isoformat())
    await expect(sue.locator(".wall-agents tr[data-agent='101'] .missed")).to_have_text("1")
