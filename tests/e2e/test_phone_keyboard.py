"""Every screen on a phone and with the keyboard alone; axe-core finds no serious or
critical violation (light and dark); the page speaks the agent's language.

axe-core comes from the npm registry (tests/e2e/package.json, installed by
`make e2e-tools`); it is evaluated in the page, past the page's CSP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.conftest import SignIn, load_fresh, play
from tests.integration.telephony_harness import Daemon

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def axe_source() -> str:
    assert AXE.is_file(), f"{AXE} is missing: run `make e2e-tools` (npm ci in tests/e2e)"
    return AXE.read_text()


async def axe_violations(page: Page, source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(source)
    result = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then(r => ({passes: r.passes.length,"
        " violations: r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}))}))"
    )
    assert result["passes"] > 10, result  # axe did run its rules
    return [v for v in result["violations"] if v["impact"] in SERIOUS]


async def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scroll)."""
    width: int = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


async def test_phone_calls_page_pop_and_contact_fit_the_screen(
    daemon: Daemon, sign_in: SignIn, screenshots: Path, axe_source: str
) -> None:
    capture = load_fresh("queue-ringall-102-answers", daemon.settings.ami.agent_channel_patterns)
    hanna = daemon.contact_ids["040 123456"]
    bob = await sign_in("bob")
    await bob.set_viewport_size(PHONE)
    await expect(bob.get_by_role("heading", level=1, name="My calls")).to_be_visible()
    await play(daemon, capture.ringing())
    card = bob.locator("#pops article.pop")
    await expect(card.locator(".state")).to_have_text("Ringing")
    await card.evaluate("el => Promise.all(el.getAnimations().map(a => a.finished))")
    assert await horizontal_overflow(bob) == 0
    assert await axe_violations(bob, axe_source) == []  # the RINGING label's contrast among them
    await bob.screenshot(path=screenshots / "screenshot-phone.png", animations="disabled")
    await bob.emulate_media(color_scheme="dark")
    await bob.screenshot(path=screenshots / "screenshot-phone-dark.png", animations="disabled")
    await bob.emulate_media(color_scheme="light")

    await play(daemon, capture.talking())
    await play(daemon, capture.ending())
    await bob.goto("/#/calls")
    await expect(bob.locator("table.calls tbody tr")).to_have_count(1)
    assert await horizontal_overflow(bob) == 0
    await bob.goto(f"/#/contact/{hanna}")
    await expect(bob.get_by_role("heading", level=1, name="Hanna Hansen")).to_be_visible()
    await expect(bob.locator("ol.timeline li.call")).to_have_count(1)
    assert await horizontal_overflow(bob) == 0
    await bob.emulate_media(color_scheme="dark")
    assert await axe_violations(bob, axe_source) == []


async def test_keyboard_only_sign_in_help_search_and_contact(
    browser: Browser, daemon: Daemon, axe_source: str
) -> None:
    context = await browser.new_context(
        base_url=str(daemon.client.make_url("/")), locale="en-GB", viewport=PHONE
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/")
    await expect(page.get_by_role("main")).to_have_count(1)  # the login page is a landmark
    assert await axe_violations(page, axe_source) == []
    await expect(page.locator("#username")).to_be_focused()
    await page.keyboard.type("alice")
    await page.keyboard.press("Tab")
    await page.keyboard.type("alice-password")
    await page.keyboard.press("Enter")
    await expect(page.locator("#link")).to_have_attribute("data-state", "live")

    await page.keyboard.press("?")
    help_box = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(help_box).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(help_box).to_be_hidden()

    await page.keyboard.press("/")
    search = page.get_by_role("searchbox")
    await expect(search).to_be_focused()
    await page.keyboard.type("hansen")
    await page.keyboard.press("Enter")
    result = page.locator("ul.results").get_by_role("link", name="Hanna Hansen")
    await expect(result).to_be_visible()
    await page.keyboard.press("Escape")  # leaves the search field, the page keeps its keys
    await expect(search).not_to_be_focused()
    for _ in range(10):  # Tab from the search field to the result
        await page.keyboard.press("Tab")
        if await result.evaluate("el => el === document.activeElement"):
            break
    await expect(result).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Hanna Hansen")).to_be_visible()

    await page.keyboard.press("/")  # from the contact: back to a search field
    await expect(page.get_by_role("searchbox")).to_be_focused()
    assert not errors, errors
    await context.close()


async def test_german_browser_stays_german_and_the_agent_may_choose(
    daemon: Daemon, sign_in: SignIn
) -> None:
    assert daemon.settings.general.language == "en"
    alice = await sign_in("alice", locale="de-DE")
    await expect(alice.get_by_role("heading", level=1, name="Meine Anrufe")).to_be_visible()
    assert await alice.evaluate("document.documentElement.lang") == "de"

    await alice.get_by_label("Sprache").select_option("en")  # kept for alice, in this browser
    await expect(alice.get_by_role("heading", level=1, name="My calls")).to_be_visible()
    await alice.reload()
    await expect(alice.get_by_role("button", name="Sign out")).to_be_visible()
    await alice.evaluate("sessionStorage.clear()")
    await alice.reload()
    await expect(alice.get_by_role("heading", name="Anmelden")).to_be_visible()  # not signed in


async def test_slash_focuses_the_search_box_of_each_page(sign_in: SignIn) -> None:
    """`/` focuses the page's own search box (the calls page's, the Contacts page's); from
    the wall and a contact, which have none, it opens the Contacts page's. The `/` itself
    is not typed into it."""
    page = await sign_in("sue")  # a supervisor: starts on the wall
    await expect(page.get_by_role("heading", level=1, name="Supervisor wall")).to_be_visible()
    targets = {
        "#nav-wall": "#contacts-q",
        "#nav-calls": "#search-q",
        "#nav-contacts": "#contacts-q",
    }
    for link, search in targets.items():
        await page.locator(link).click()
        await expect(page.locator(link)).to_have_attribute("aria-current", "page")
        await page.keyboard.press("/")
        await expect(page.locator(search)).to_be_focused()
        await expect(page.locator(search)).to_have_value("")
        await page.keyboard.press("Escape")
        await expect(page.locator(search)).not_to_be_focused()
