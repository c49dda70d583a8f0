"""Trustworthy pops, wrap-up and the Contacts page in Chromium against the real daemon."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from core.models import Contact, PhoneNumber
from core.phones import normalise, rev_digits
from core.search import search_key
from crmcomms.services import SERVICES
from tests.e2e.conftest import Sections, SignIn, load_fresh, play
from tests.integration.telephony_harness import Daemon


@pytest.fixture
def daemon_settings() -> Sections:
    return {"wrapup": {"fold_after_seconds": 2}}


async def _legacy_contact(daemon: Daemon, name: str, raw: str) -> int:
    """A contact whose number was typed in an odd format long ago (no valid E.164)."""
    number = normalise(raw, "DE")
    assert number is not None and number.e164 is None
    async with daemon.client.app[SERVICES].sessions.begin() as session:
        contact = Contact(display_name=name, last_name=name, search_key=search_key([name]))
        contact.phones = [PhoneNumber(raw=raw, e164=None, rev_digits=rev_digits(number))]
        session.add(contact)
        await session.flush()
        return contact.id


@pytest.mark.parametrize("daemon_settings", [{"wrapup": {"fold_after_seconds": 0}}])
async def test_a_pop_matched_by_the_last_digits_is_confirmed_and_wrapped_up(
    daemon: Daemon, sign_in: SignIn
) -> None:
    # Jürgen Müller (+49 30 12345678) loses his number; Bernd's valid 089 12345678 ends
    # alike but is never offered; only a legacy row typed as "(030) 12345678 / Zentrale" is.
    jurgen = daemon.contact_ids["+493012345678"]
    headers = {"Authorization": f"Bearer {daemon.tokens['sue']}"}
    body = {"first_name": "Jürgen", "last_name": "Müller", "phones": []}
    resp = await daemon.client.put(f"/api/contacts/{jurgen}", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    legacy = await _legacy_contact(daemon, "Müller Altbestand", "(030) 12345678 / Zentrale")
    capture = load_fresh("inbound-direct-answered", daemon.settings.ami.agent_channel_patterns)
    alice = await sign_in("alice")

    await play(daemon, capture.ringing())
    card = alice.locator("#pops article.pop")
    await expect(card.locator(".who")).to_have_text("Müller Altbestand")
    await expect(card.locator(".match")).to_have_attribute("data-match", "suffix")
    await expect(card.locator(".match")).to_contain_text("Only the last digits match")
    await expect(card.locator(".number")).to_contain_text("030 12345678")
    await expect(card.locator(".number .dialled")).to_contain_text("+493012345678")
    await expect(card.get_by_role("link", name="Open contact")).to_have_count(0)
    await card.get_by_role("button", name="Müller Altbestand is the caller").click()
    await expect(card.locator(".confirmed")).to_contain_text("Filed with Müller Altbestand")
    call_id = await card.get_attribute("data-call-id")
    assert (await daemon.api(f"/api/calls/{call_id}"))["contacts"] == [legacy]

    await play(daemon, capture.talking())
    await expect(card).to_have_attribute("data-state", "talking")
    await card.get_by_label("Outcome").select_option("sale")
    await expect(alice.locator("#toast")).to_contain_text("Outcome saved: Sale")
    assert (await daemon.api(f"/api/calls/{call_id}"))["disposition"] == "sale"

    await alice.get_by_role("link", name="Contacts").click()  # searching while the call ends
    search = alice.locator("#contacts-q")
    await search.fill("müll")
    await play(daemon, capture.ending())
    await expect(card).to_have_attribute("data-state", "ended")
    note = card.get_by_label("Note about this call")
    await expect(note).to_be_visible()
    await expect(search).to_be_focused()  # the note field did not steal the focus

    await note.fill("Wants the invoice again")
    await note.press("Escape")  # a note being written is not dismissed (nor folded away)
    await expect(card).to_have_count(1)
    await card.get_by_role("button", name="Save note").click()
    await expect(alice.locator("#toast")).to_contain_text("Note saved")
    await alice.keyboard.press("Escape")
    await expect(card).to_have_count(0)


async def test_an_ended_pop_folds_away_by_itself(daemon: Daemon, sign_in: SignIn) -> None:
    capture = load_fresh("inbound-direct-answered", daemon.settings.ami.agent_channel_patterns)
    alice = await sign_in("alice")
    await play(daemon, capture.ringing())
    card = alice.locator("#pops article.pop")
    await expect(card.locator(".match")).to_have_attribute("data-match", "exact")
    await play(daemon, capture.talking())
    await expect(card).to_have_attribute("data-state", "talking")
    await alice.evaluate(SAW_ENDED)
    await play(daemon, capture.ending())
    await expect(card).to_have_count(0)  # wrapup.fold_after_seconds (2 s) after the end
    assert await alice.evaluate("window.sawEnded")


SAW_ENDED = """() => {
  window.sawEnded = false;
  new MutationObserver(() => {
    window.sawEnded ||= Boolean(document.querySelector('#pops article.pop[data-state="ended"]'));
  }).observe(document.getElementById("pops"), { subtree: true, attributes: true });
}"""


async def test_contacts_page_searches_creates_and_merges(daemon: Daemon, sign_in: SignIn) -> None:
    sue = await sign_in("sue")
    await sue.get_by_role("link", name="Contacts").click()
    await expect(sue.get_by_role("heading", level=1)).to_have_text("Contacts")
    results = sue.locator(".contact-results li.contact-row")
    search = sue.get_by_role("searchbox", name="Search contacts")

    await search.fill("müller")  # finds Müller and Mueller alike
    await expect(results).to_have_count(2)
    await expect(results).to_contain_text(["Jürgen Müller", "Max Mueller"])
    await search.fill("0171 555")  # any part of a number, national prefix and all
    await expect(results).to_have_count(2)
    await expect(results).to_contain_text(["Max Mueller", "Petra Schulz"])

    await search.fill("mueller")
    await expect(results).to_contain_text(["Jürgen Müller", "Max Mueller"])
    await results.nth(0).get_by_role("checkbox").check()
    await results.nth(1).get_by_role("checkbox").check()
    await sue.get_by_role("button", name="Merge into Jürgen Müller (Müller Bau GmbH)").click()
    await expect(sue.locator("#toast")).to_contain_text("Merged into Jürgen Müller")
    await expect(results).to_have_count(1)
    await expect(results).to_contain_text("Jürgen Müller")

    await sue.get_by_role("button", name="New contact").click()
    await sue.get_by_label("First name").fill("Zoë")
    await sue.get_by_label("Last name").fill("Straße")
    await sue.get_by_label("Phone").fill("0221 987654")
    await sue.get_by_role("button", name="Save", exact=True).click()
    await expect(sue.get_by_role("heading", level=1)).to_have_text("Zoë Straße")
    await sue.get_by_label("Add tag").fill("VIP")
    await sue.get_by_role("button", name="Add tag").click()
    await expect(sue.locator(".tags .tag-chip")).to_contain_text(["VIP"])
    await sue.get_by_role("button", name="Add task").click()
    await sue.get_by_label("What is to be done").fill("Send the catalogue")
    await sue.get_by_role("button", name="Save task").click()
    await expect(sue.locator(".timeline li.task")).to_contain_text("Send the catalogue")
