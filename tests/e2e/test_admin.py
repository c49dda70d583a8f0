"""The admin page (/admin) in Chromium: an admin lists agents, adds one, changes an
extension, resets a password and disables an agent, who then cannot sign in; an
agent or a supervisor gets no agent administration (403, no link, the page says so).
axe-core finds no serious or critical violation on it."""

from __future__ import annotations

from collections.abc import Mapping

from playwright.async_api import Browser, Dialog, Page, expect

from core.agents import add_agent
from crmcomms.services import SERVICES
from tests.e2e.conftest import SignIn
from tests.e2e.test_phone_keyboard import axe_source, axe_violations
from tests.integration.telephony_harness import Daemon

__all__ = ["axe_source"]  # the module fixture, shared with the phone/keyboard tests


async def make_admin(daemon: Daemon, name: str) -> None:
    """An admin with the seeded agents' password rule, signed in for the API too."""
    async with daemon.client.app[SERVICES].sessions.begin() as session:
        await add_agent(session, name, f"{name}-password", [], role="admin")
    login = {"username": name, "password": f"{name}-password"}
    resp = await daemon.client.post("/api/login", json=login)
    daemon.tokens[name] = (await resp.json())["token"]


def answer_prompts(page: Page, answers: Mapping[str, str | None]) -> None:
    """Answer the page's prompt()/confirm() dialogs: by the start of their message, a
    value to type (None: keep the default)."""

    async def on_dialog(dialog: Dialog) -> None:
        for start, value in answers.items():
            if dialog.message.startswith(start):
                await dialog.accept(dialog.default_value if value is None else value)
                return
        await dialog.dismiss()
        raise AssertionError(f"unexpected dialog: {dialog.message}")

    page.on("dialog", on_dialog)


async def login_refused(browser: Browser, daemon: Daemon, name: str, password: str) -> Page:
    """The agent page of a fresh browser after a sign-in attempt."""
    context = await browser.new_context(base_url=str(daemon.client.make_url("/")))
    page = await context.new_page()
    await page.goto("/")
    await page.locator("#username").fill(name)
    await page.locator("#password").fill(password)
    await page.locator("#login-form button[type=submit]").click()
    return page


async def api_status(daemon: Daemon, path: str, token: str) -> int:
    resp = await daemon.client.get(path, headers={"Authorization": f"Bearer {token}"})
    return resp.status


async def test_admin_manages_agents(
    daemon: Daemon, sign_in: SignIn, browser: Browser, axe_source: str
) -> None:
    await make_admin(daemon, "root")
    page = await sign_in("root")
    await page.goto("/admin")
    rows = page.locator("#agents tbody tr")
    await expect(rows).to_have_count(5)  # alice, bob, carol, sue and root
    bob = page.locator("#agents tr[data-agent='bob']")
    await expect(bob.locator("td").nth(2)).to_have_text("102")
    await expect(page.locator("#agents tr[data-agent='sue'] td").nth(1)).to_have_text("supervisor")

    # a new agent; an extension that is taken is refused naming the field
    await page.get_by_label("Login name").fill("erin")
    await page.get_by_label("Password (8 characters or more)").fill("erin-password")
    await page.get_by_label("Extensions (comma-separated)").fill("101")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#status")).to_contain_text("extension: 101 already belongs")
    await expect(rows).to_have_count(5)
    await page.get_by_label("Login name").fill("erin")
    await page.get_by_label("Password (8 characters or more)").fill("erin-password")
    await page.get_by_label("Extensions (comma-separated)").fill("104")
    await page.get_by_label("E-mail").fill("erin@company.test")
    await page.get_by_role("button", name="Create").click()
    erin = page.locator("#agents tr[data-agent='erin']")
    await expect(erin.locator("td").nth(2)).to_have_text("104")
    await expect(page.locator("#status")).to_have_text("")
    await expect(page.get_by_label("Login name")).to_have_value("")  # the form was reset

    # bob moves to extension 105 (role and e-mail kept); alice gets a new password;
    # carol is disabled
    answer_prompts(
        page,
        {
            "Extensions of bob": "105",
            "Role of bob": None,
            "E-mail of bob": None,
            "New password for alice": "alice-new-password",
        },
    )
    await bob.get_by_role("button", name="Edit").click()
    await expect(bob.locator("td").nth(2)).to_have_text("105")
    await expect(bob.locator("td").nth(1)).to_have_text("agent")
    await (
        page.locator("#agents tr[data-agent='alice']")
        .get_by_role("button", name="Password")
        .click()
    )
    carol = page.locator("#agents tr[data-agent='carol']")
    await carol.get_by_role("button", name="Disable").click()
    await expect(carol.locator("td").nth(4)).to_have_text("disabled")
    await expect(carol.get_by_role("button", name="Enable")).to_be_visible()
    assert await axe_violations(page, axe_source) == []  # a disabled row among the others

    listed = {a["name"]: a for a in (await daemon.api("/api/agents", "root"))["agents"]}
    assert listed["bob"]["extensions"] == ["105"] and listed["erin"]["extensions"] == ["104"]

    # carol cannot sign in any more, and her open session is over
    refused = await login_refused(browser, daemon, "carol", "carol-password")
    await expect(refused.locator("#login-error")).not_to_be_empty()
    await expect(refused.locator("#link")).not_to_have_attribute("data-state", "live")
    assert await api_status(daemon, "/api/me", daemon.tokens["carol"]) == 401
    # alice signs in with the new password only; erin with hers
    old = await daemon.client.post(
        "/api/login", json={"username": "alice", "password": "alice-password"}
    )
    assert old.status == 401
    await sign_in("erin")
    alice = await login_refused(browser, daemon, "alice", "alice-new-password")
    await expect(alice.locator("#link")).to_have_attribute("data-state", "live")


async def test_no_admin_page_without_the_admin_role(daemon: Daemon, sign_in: SignIn) -> None:
    for name in ("bob", "sue"):  # an agent and a supervisor
        assert await api_status(daemon, "/api/agents", daemon.tokens[name]) == 403
        page = await sign_in(name)
        await expect(page.locator("a[href='/admin']")).to_have_count(0)  # no way there
        await page.goto("/admin")
        await expect(page.locator("#login-error")).to_have_text(
            f"{name} is no admin: sign in as an admin."
        )
        await expect(page.locator("#shell")).to_be_hidden()
        await expect(page.locator("#agents tbody tr")).to_have_count(0)
