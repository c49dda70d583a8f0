"""Browser fixtures: Debian's Chromium driven by Playwright against the real daemon.

The daemon (built like tests/integration/telephony_harness.py does, plus the
settings sections a test module asks for with a ``daemon_settings`` fixture, e.g.
a mailbox) runs in the test's event loop with a real AMI replay server; the page
talks to it over HTTP and websockets on 127.0.0.1. Captures are replayed in
phases (up to the answer, up to the end, the rest) so the tests can look at the
card while the phone is still ringing; the split points are found by feeding the
capture through the real call tracker.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from playwright.async_api import Browser, Page, async_playwright, expect

import core.agents
from core.mail import parse_message
from core.mail.store import Copy, Fetched, StoreOptions, store_messages
from crmcomms.ami.capture import CaptureBlock, Freshener, load_capture
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.app import build_app
from crmcomms.config import parse_settings
from crmcomms.keys import TELEPHONY
from crmcomms.mail import blob_store
from crmcomms.services import SERVICES
from crmcomms.telephony.calls import CallAnswered, CallEnded, CallRinging
from crmcomms.telephony.tracker import CallTracker
from tests.ami_edge import feed
from tests.integration.telephony_harness import CAPTURES, Daemon, _seed
from tests.mail_servers import free_port

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
        for event in feed(tracker, [block.fields]):
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


Sections = dict[str, Any]


@asynccontextmanager
async def running_daemon(tmp_path: Path, sections: Sections) -> AsyncIterator[Daemon]:
    """The harness's daemon (replay server, seeded agents and contacts, tokens), with
    further settings ``sections``: dicts are merged, ``mailboxes`` is a list."""
    async with AmiReplayServer("crm", "crmsecret") as pbx:
        raw: dict[str, Any] = {
            "general": {"data_dir": str(tmp_path / "data")},
            "http": {"port": 0},
            "ami": {
                "enabled": True,
                "port": pbx.port,
                "username": "crm",
                "secret": "crmsecret",
                "recordings_dir": str(tmp_path / "recordings"),
            },
        }
        for name, values in sections.items():
            if isinstance(values, dict):
                raw.setdefault(name, {}).update(values)
            else:
                raw[name] = values
        settings = parse_settings(raw, env={})
        passwords, contact_ids = await _seed(settings)
        async with TestClient(TestServer(build_app(settings), host="127.0.0.1")) as client:
            tokens = {}
            for name, password in passwords.items():
                resp = await client.post(
                    "/api/login", json={"username": name, "password": password}
                )
                tokens[name] = (await resp.json())["token"]
            await pbx.wait_logged_in(1)
            await client.app[TELEPHONY].idle.wait()
            assert client.app[SERVICES].settings.ami.enabled
            yield Daemon(client, pbx, tokens, contact_ids, settings)


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its cheapest: each default hash costs ~0.5 s of a shared CPU, and every
    test seeds four agents and signs in several times. Hashing is tested elsewhere."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(core.agents, "_hasher", lambda: cheap)


def sending_mailbox(smtp_port: int, **extra: str) -> Sections:
    """Settings with one mailbox sending through the SMTP server on ``smtp_port``; its
    IMAP server is down (nothing listens), so filing the copy in Sent fails, which must
    not touch the outcome."""
    box = {
        "name": "support",
        "address": "support@company.test",
        "imap_host": "127.0.0.1",
        "imap_port": free_port(),
        "imap_tls": "none",
        "username": "crm",
        "password": "secret-pw",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_tls": "none",
        **extra,
    }
    return {"mailboxes": [box]}


@pytest.fixture
def daemon_settings() -> Sections:
    """Settings sections besides AMI for the daemon; a test module overrides this."""
    return {}


@pytest.fixture
async def daemon(tmp_path: Path, daemon_settings: Sections) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path, daemon_settings) as running:
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
    form = page.locator("#login-form")  # by id: its labels follow the browser's language
    await form.locator("#username").fill(name)
    await form.locator("#password").fill(f"{name}-password")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#link")).to_have_attribute("data-state", "live")
    return page


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ with CRMCOMMS_SCREENSHOTS=1 (`make screenshots`), else tmp."""
    return DOCS if os.environ.get("CRMCOMMS_SCREENSHOTS") == "1" else tmp_path


async def give_address(daemon: Daemon, contact_id: int, address: str) -> None:
    """Add an e-mail address to a seeded contact, through the API."""
    headers = {"Authorization": f"Bearer {daemon.tokens['sue']}"}
    card = await daemon.api(f"/api/contacts/{contact_id}")
    body = {
        "first_name": card["first_name"],
        "last_name": card["last_name"],
        "organization": (card["organization"] or {}).get("name"),
        "phones": [{"raw": p["raw"], "label": p["label"] or ""} for p in card["phones"]],
        "emails": [{"address": address}],
    }
    resp = await daemon.client.put(f"/api/contacts/{contact_id}", json=body, headers=headers)
    assert resp.status == 200, await resp.text()


async def store_received(daemon: Daemon, raw: bytes, contacts: list[int]) -> int:
    """Store ``raw`` as the mailbox sync stores a fetched message; its id."""
    svc = daemon.client.app[SERVICES]
    copy = Copy("support", "INBOX", 1, 1)
    options = StoreOptions(own_addresses=frozenset({"support@company.test"}))
    async with svc.sessions.begin() as session:
        fetched = Fetched(copy, raw, parse_message(raw))
        [stored] = await session.run_sync(
            store_messages, [fetched], blob_store(svc.settings), options
        )
    assert stored.created and list(stored.contact_ids) == contacts
    return stored.id
