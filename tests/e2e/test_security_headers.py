"""The agent page under the daemon's Content-Security-Policy header (issue 10): it loads,
signs in and goes live with no violation reported by the browser."""

from __future__ import annotations

from playwright.async_api import ConsoleMessage, expect

from crmcomms.web.http import PAGE_POLICY
from tests.e2e.conftest import SignIn


async def test_the_page_runs_under_the_policy_header(sign_in: SignIn) -> None:
    alice = await sign_in("alice")
    refused: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    alice.on("console", note)
    response = await alice.reload()

    assert response is not None
    assert response.headers["content-security-policy"] == PAGE_POLICY
    await expect(alice.locator("#link")).to_have_attribute("data-state", "live")
    for view in ("#/contacts", "#/calls"):
        await alice.goto(f"/{view}")
        await expect(alice.locator("#link")).to_have_attribute("data-state", "live")
    assert await alice.evaluate("window.top === window.self")
    assert refused == []
