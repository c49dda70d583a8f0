"""The agent's page in headless Chromium against the real daemon and AMI replays."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from playwright.async_api import Page, expect

from crmcomms.services import SERVICES
from tests.e2e.conftest import (
    Capture,
    SignIn,
    cut_connections,
    give_address,
    load_fresh,
    play,
    store_received,
)
from tests.integration.telephony_harness import Daemon


async def test_queue_call_pops_on_bob_and_not_on_carol(
    daemon: Daemon, sign_in: SignIn, screenshots: Path
) -> None:
    capture = load_fresh("queue-ringall-102-answers", daemon.settings.ami.agent_channel_patterns)
    hanna = daemon.contact_ids["040 123456"]
    headers = {"Authorization": f"Bearer {daemon.tokens['bob']}"}
    note = {"body": "Asked for a quote for 40 pallets to Rotterdam; send prices by Friday."}
    resp = await daemon.client.post(f"/api/contacts/{hanna}/notes", json=note, headers=headers)
    assert resp.status == 201, await resp.text()
    bob = await sign_in("bob")
    carol = await sign_in("carol")

    await play(daemon, capture.ringing())
    card = bob.locator("#pops article.pop")
    await expect(card).to_have_count(1)
    await expect(card).to_have_attribute("data-state", "ringing")
    await expect(card.locator(".who")).to_have_text("Hanna Hansen")
    await expect(card.locator(".org")).to_have_text("Hansen Logistik")
    await expect(card.locator(".via")).to_contain_text("support")
    await expect(card.get_by_role("link", name="Open contact")).to_be_visible()
    await expect(card.locator(".recent li.note")).to_contain_text("40 pallets")
    await bob.screenshot(path=screenshots / "screenshot-pop.png", animations="disabled")

    await play(daemon, capture.talking())
    await expect(card).to_have_attribute("data-state", "talking")
    await expect(card.locator(".timer")).to_have_text(re.compile(r"^0:\d\d$"))

    await play(daemon, capture.ending())
    await expect(card).to_have_attribute("data-state", "ended")
    await expect(card.locator(".outcome")).to_contain_text("answered")
    await expect(card.get_by_label("Note about this call")).to_be_visible()
    await expect(carol.locator("#pops article")).to_have_count(0)
    await expect(carol.locator("#link")).to_have_attribute("data-state", "live")


async def test_link_drop_in_mid_call_loses_no_event(daemon: Daemon, sign_in: SignIn) -> None:
    capture = load_fresh("queue-ringall-102-answers", daemon.settings.ami.agent_channel_patterns)
    bob = await sign_in("bob")
    await play(daemon, capture.ringing())
    await expect(bob.locator("#pops article.pop")).to_have_attribute("data-state", "ringing")
    await _drop_and_restore(daemon, bob, capture)
    assert await bob.evaluate("window.crm.link.applied") == await _everything_for(daemon, "bob")
    assert await bob.evaluate("window.crm.link.reloads") == 0


async def _everything_for(daemon: Daemon, name: str) -> list[int]:
    """The seqs of every event ``name`` may see, as the hub would replay them since 0."""
    svc = daemon.client.app[SERVICES]
    subscription = svc.hub.subscribe(await svc.authenticate(daemon.tokens[name]), 0, None)
    svc.hub.unsubscribe(subscription)
    assert not subscription.reload
    return [event.seq for event in subscription.backlog]


async def _drop_and_restore(daemon: Daemon, bob: Page, capture: Capture) -> None:
    card = bob.locator("#pops article.pop")
    await bob.context.set_offline(True)  # new connections fail from now on...
    assert cut_connections(daemon)  # ...and the open websocket is cut
    await expect(bob.locator("#link")).not_to_have_attribute("data-state", "live")
    await play(daemon, capture.talking())
    await play(daemon, capture.ending())
    await expect(card).to_have_attribute("data-state", "ringing")  # nothing came through

    await bob.context.set_offline(False)
    await expect(bob.locator("#link")).to_have_attribute("data-state", "live")
    await expect(card).to_have_attribute("data-state", "ended")
    await expect(card.locator(".outcome")).to_contain_text("answered")
    await expect(bob.locator("#pops article.pop")).to_have_count(1)


async def test_missed_call_listed_with_call_back_and_tick_off(
    daemon: Daemon, sign_in: SignIn
) -> None:
    capture = load_fresh("inbound-direct-missed", daemon.settings.ami.agent_channel_patterns)
    alice = await sign_in("alice")
    await expect(alice.get_by_text("No missed calls.")).to_be_visible()
    await play(daemon, capture.blocks)

    missed = alice.locator("li.missed-call")
    await expect(missed).to_have_count(1)
    await expect(missed).to_contain_text("Petra Schulz")
    async with alice.expect_response("**/api/calls") as dialled:
        await missed.get_by_role("button", name=re.compile("^Call back")).click()
    assert (await dialled.value).status == 202
    originate = [a.fields for a in daemon.pbx.actions if a.fields.get("Action") == "Originate"]
    assert [a["Channel"] for a in originate] == ["PJSIP/101"]
    assert originate[0]["Exten"].endswith("1715550123")

    await missed.get_by_role("button", name="Done").click()
    # ticked off: "Done ✓" disabled, or, once task.done has refreshed the list, no button
    await expect(missed.locator("button.tick:visible:enabled")).to_have_count(0)
    assert (await daemon.api("/api/tasks?open=1", "alice"))["tasks"] == []


HOSTILE = (
    "<p>Hello <b>there</b></p><script>document.title='pwned';parent.pwned=1</script>"
    "<img src=x onerror=\"document.body.dataset.pwned='1';parent.pwned=2\">"
)


async def test_note_with_markup_renders_as_text(daemon: Daemon, sign_in: SignIn) -> None:
    contact = daemon.contact_ids["01715550123"]
    headers = {"Authorization": f"Bearer {daemon.tokens['alice']}"}
    resp = await daemon.client.post(
        f"/api/contacts/{contact}/notes", json={"body": HOSTILE}, headers=headers
    )
    assert resp.status == 201, await resp.text()
    alice = await sign_in("alice")
    await alice.goto(f"/#/contact/{contact}")
    note = alice.locator("ol.timeline li.note .body")
    await expect(note).to_have_text(HOSTILE)
    await expect(alice.locator("ol.timeline img, ol.timeline script")).to_have_count(0)
    assert await alice.evaluate("window.pwned") is None


async def test_email_html_renders_inert(daemon: Daemon, sign_in: SignIn) -> None:
    """A received e-mail with a script and an onerror handler, stored as the mailbox
    sync stores it: sanitised by the server, shown in a script-less sandboxed iframe."""
    petra = daemon.contact_ids["01715550123"]
    await give_address(daemon, petra, "petra@schulz.test")
    mail = EmailMessage()
    mail["From"] = "Petra Schulz <petra@schulz.test>"
    mail["To"] = "support@company.test"
    mail["Subject"] = "Invoice 4711"
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = "<invoice-4711@schulz.test>"
    mail.set_content("Hello there, see the invoice.")
    mail.add_alternative(HOSTILE, subtype="html")
    email_id = await store_received(daemon, mail.as_bytes(), [petra])
    served = await daemon.api(f"/api/emails/{email_id}", "alice")
    assert "there" in served["html"]
    assert not re.search(r"<script|onerror|pwned", served["html"], re.IGNORECASE)

    alice = await sign_in("alice")
    await alice.goto(f"/#/contact/{petra}")
    entry = alice.locator("ol.timeline li.email")
    await expect(entry.locator(".subject")).to_have_text("Invoice 4711")
    await expect(entry.locator(".from")).to_have_text("From: Petra Schulz <petra@schulz.test>")
    await entry.get_by_role("button", name="Show message").click()
    frame_el = entry.locator("iframe.mail-html")
    await expect(frame_el).to_have_attribute("sandbox", re.compile("^(?!.*allow-scripts)"))
    await expect(alice.frame_locator("iframe.mail-html").get_by_text("there")).to_be_visible()
    frame = await (await frame_el.element_handle()).content_frame()
    assert frame is not None
    assert await frame.evaluate("document.querySelectorAll('script, [onerror]').length") == 0
    assert await frame.evaluate("document.title") != "pwned"
    assert await frame.evaluate("document.body.dataset.pwned") is None
    assert await alice.evaluate("[window.pwned, document.title]") == [None, "crmcomms"]

    # no mailbox can send here: no Reply offered that would fail (test_email.py replies)
    await expect(entry.get_by_role("button", name="Reply")).to_be_hidden()


async def test_unknown_caller_gets_a_prefilled_create_contact_form(
    daemon: Daemon, sign_in: SignIn
) -> None:
    petra = daemon.contact_ids["01715550123"]
    headers = {"Authorization": f"Bearer {daemon.tokens['sue']}"}  # deleting: supervisors
    assert (await daemon.client.delete(f"/api/contacts/{petra}", headers=headers)).status == 204
    capture = load_fresh("inbound-direct-missed", daemon.settings.ami.agent_channel_patterns)
    alice = await sign_in("alice")
    await play(daemon, capture.ringing())

    card = alice.locator("#pops article.pop")
    await expect(card.locator(".who")).to_have_text("Unknown caller")
    form = card.locator("form.create-contact")
    await expect(form.get_by_label("Number")).to_have_value("01715550123")
    await form.get_by_label("First name").fill("Petra")
    await form.get_by_label("Last name").fill("Schulz")
    await form.get_by_role("button", name="Create contact").click()
    await expect(card.locator(".who")).to_have_text("Petra Schulz")
    await card.get_by_role("link", name="Open contact").click()
    await expect(alice.locator("#contact-name")).to_have_text("Petra Schulz")
    found = await daemon.api("/api/lookup?number=01715550123", "alice")
    assert [c["display_name"] for c in found["matches"]] == ["Petra Schulz"]
    call = await daemon.api(f"/api/calls/{await card.get_attribute('data-call-id')}")
    assert call["contacts"] == [found["matches"][0]["id"]]  # the call is filed with her
