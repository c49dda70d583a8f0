"""Browser fixtures: Debian's Chromium driven by Playwright against the real daemon.

The daemon (tests/integration/telephony_harness.py) runs in the test's event loop
with a real AMI replay server; the page talks to it over HTTP and websockets on
127.0.0.1. Captures are replayed in phases (up to the answer, up to the end, the
rest) so the tests can look at the card while the phone is still ringing; the
split points are found by feeding the capture through the real call tracker.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from crmcomms.ami.capture import CaptureBlock, Freshener, load_capture
from crmcomms.telephony.calls import CallAnswered, CallEnded, CallRinging
from crmcomms.telephony.tracker import CallTracker
from tests.integration.telephony_harness import CAPTURES, Daemon, running_daemon

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).parents[2] / "docs"
TIMEOUT_MS = 10_000

expect.set_options(timeout=TIMEOUT_MS)


@dataclass(frozen=True)
class Capture:
    """A capture moved to the present, cut where the tracker sees the answer and the end.

    ``ringing()`` stops before the first block that changes a ringing pop (answer,
    ring stopped or end); ``talking()`` runs from there to the end of the call.
    """

    blocks: list[CaptureBlock]
    answered_at: int | None
    ended_at: int
    ring_changed_at: int

    def ringing(self) -> list[CaptureBlock]:
        return self.blocks[: self.ring_changed_at]

    def talking(self) -> list[CaptureBlock]:
        return self.blocks[self.ring_changed_at : self.ended_at]

    def ending(self) -> list[CaptureBlock]:
        return self.blocks[self.ended_at :]


def load_fresh(scenario: str, patterns: Sequence[str]) -> Capture:
    """``scenario`` with Timestamps moved to now, and its answer/end block indexes."""
    blocks = load_capture(CAPTURES / f"{scenario}.ami")
    freshener = Freshener(blocks, itertools.count(1))
    shift = freshener.shift_to(time.time())
    blocks = [freshener.rewrite(block, {}, shift) for block in blocks]
    tracker = CallTracker(patterns)
    answered = ended = changed = None
    for index, block in enumerate(blocks):
        for event in tracker.feed_message(block.fields):
            if isinstance(event, CallAnswered) and answered is None:
                answered = index
            if isinstance(event, CallEnded) and ended is None:
                ended = index
            if not isinstance(event, CallRinging) and changed is None:
                changed = index
    assert ended is not None and changed is not None, f"{scenario}: the call never ends"
    return Capture(blocks, answered, ended, changed)


async def play(daemon: Daemon, blocks: Sequence[CaptureBlock]) -> None:
    """Replay these blocks over the AMI socket and wait until the daemon consumed them."""
    if not blocks:
        return
    await daemon.pbx.replay(list(blocks))
    daemon.sent += sum(1 for block in blocks if "Event" in block.fields)
    await daemon.settle()


def cut_connections(daemon: Daemon) -> int:
    """Abort every TCP connection the daemon's HTTP server holds (websockets included)."""
    runner = daemon.client.server.runner
    assert runner is not None and runner.server is not None
    server = runner.server
    handlers = server.connections
    for handler in handlers:
        if handler.transport is not None:
            handler.transport.abort()
    return len(handlers)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def sign_in(browser: Browser, daemon: Daemon) -> AsyncIterator[SignIn]:
    """Open a page signed in as an agent; no page may raise a script error."""
    errors: list[str] = []

    async def open_page(name: str, *, locale: str = "en-GB") -> Page:
        return await _signed_in_page(browser, daemon, name, errors, locale)

    yield open_page
    assert not errors, errors


SignIn = Callable[..., Awaitable[Page]]


async def _signed_in_page(
    browser: Browser, daemon: Daemon, name: str, errors: list[str], locale: str
) -> Page:
    """A fresh browser context signed in as ``name``, its live link up."""
    context = await browser.new_context(
        base_url=str(daemon.client.make_url("/")),
        locale=locale,
        viewport={"width": 1280, "height": 860},
    )
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{name}: {exc}"))
    await page.goto("/")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(f"{name}-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#link")).to_have_attribute("data-state", "live")
    return page


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ with CRMCOMMS_SCREENSHOTS=1 (`make screenshots`), else tmp."""
    return DOCS if os.environ.get("CRMCOMMS_SCREENSHOTS") == "1" else tmp_path
