"""A German call center: `general.language = "de"` gives German strings and German
dates and numbers on the agent's page of an agent whose browser speaks neither of the
page's languages (a German or English browser, or the agent's choice, come first)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import Sections, SignIn, load_fresh, play
from tests.integration.telephony_harness import Daemon


@pytest.fixture
def daemon_settings() -> Sections:
    return {"general": {"language": "de"}}


async def test_german_agent_sees_a_german_pop(daemon: Daemon, sign_in: SignIn) -> None:
    capture = load_fresh("queue-ringall-102-answers", daemon.settings.ami.agent_channel_patterns)
    hanna = daemon.contact_ids["040 123456"]
    headers = {"Authorization": f"Bearer {daemon.tokens['bob']}"}
    note = {"body": "Angebot für 40 Paletten nach Rotterdam."}
    resp = await daemon.client.post(f"/api/contacts/{hanna}/notes", json=note, headers=headers)
    assert resp.status == 201, await resp.text()
    me = await daemon.api("/api/me", "bob")
    assert me["language"] == "de"

    bob = await sign_in("bob", locale="fr-FR")  # a browser the page does not speak: the config
    assert await bob.evaluate("document.documentElement.lang") == "de"
    await expect(bob.get_by_role("heading", name="Verpasste Anrufe")).to_be_visible()
    await expect(bob.get_by_role("button", name="Abmelden")).to_be_visible()

    await play(daemon, capture.ringing())
    card = bob.get_by_role("article", name="Anruf von Hanna Hansen")
    await expect(card.locator(".state")).to_have_text("Klingelt")
    await expect(card.locator(".via")).to_have_text(re.compile(r"^Warteschlange support"))
    await expect(card.get_by_role("heading", name="Letzte Kontakte")).to_be_visible()
    date = r"\d{2}\.\d{2}\.\d{4}, \d{2}:\d{2}"  # de-DE, medium: 27.11.2026, 08:01
    await expect(card.locator(".recent li.note")).to_have_text(re.compile(f"^{date} · ✎ Angebot"))
    await expect(card.get_by_role("link", name="Kontakt öffnen")).to_be_visible()
    number = "import('/static/i18n.js').then(m => [m.fmtNumber(1234567.5, 1), m.fmtInt(4711)])"
    assert await bob.evaluate(number) == ["1.234.567,5", "4.711"]

    await play(daemon, capture.talking())
    await expect(card.locator(".state")).to_have_text("Im Gespräch")
    await play(daemon, capture.ending())
    await expect(card.locator(".state")).to_have_text("Beendet")
    await expect(card.locator(".outcome")).to_have_text(re.compile(r"^angenommen · \d+:\d\d$"))
    await expect(card.get_by_label("Notiz zu diesem Anruf")).to_be_visible()
    await expect(bob.locator("table.calls td.status")).to_have_text(["angenommen"])
