"""The e-mail composer: From with the mailbox's display name, Cc, Bcc (on the envelope,
not in the header that goes out), an attachment, the agent's signature; the timeline
previews the new text on one line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import Sections, SignIn, give_address, sending_mailbox
from tests.integration.telephony_harness import Daemon
from tests.mail_servers import SmtpSink, run_smtp
from tests.waits import wait_until


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with run_smtp() as sink:
        yield sink


@pytest.fixture
def daemon_settings(smtp: SmtpSink) -> Sections:
    return sending_mailbox(smtp.port, display_name="Müller Bau Support")


async def test_cc_bcc_attachment_signature_and_display_name(
    daemon: Daemon, sign_in: SignIn, smtp: SmtpSink
) -> None:
    petra = daemon.contact_ids["01715550123"]
    await give_address(daemon, petra, "petra@schulz.test")
    alice = await sign_in("alice")
    await alice.goto(f"/#/contact/{petra}")
    await alice.get_by_role("button", name="Write e-mail").click()
    composer = alice.locator("form.compose")
    await expect(composer.get_by_label("From")).to_have_value(
        "Müller Bau Support <support@company.test>"
    )
    await composer.locator("summary").click()  # opens the signature editor
    await composer.get_by_role("textbox", name="Signature").fill("Alice Adler\nMüller Bau")
    await composer.get_by_role("button", name="Keep as my signature").click()
    await composer.get_by_role("button", name="Close").click()

    await alice.get_by_role("button", name="Write e-mail").click()
    message = composer.get_by_role("textbox", name="Message")
    await expect(message).to_have_value("\n\n-- \nAlice Adler\nMüller Bau")
    await expect(message).to_be_focused()
    await message.press_sequentially("Dear Ms Schulz,\n\nthe prices are attached.")
    await composer.get_by_label("Cc", exact=True).fill("office@schulz.test")
    await composer.get_by_label("Bcc", exact=True).fill("boss@company.test")
    await composer.get_by_label("Subject").fill("Your quote")
    prices = {"name": "prices.csv", "mimeType": "text/csv", "buffer": b"item;price\npallet;12\n"}
    await composer.get_by_label("Attach files").set_input_files(prices)
    await expect(composer.locator(".files li")).to_contain_text("prices.csv")
    await composer.get_by_role("button", name="Send").click()
    await expect(composer.get_by_role("status")).to_have_text(re.compile(r"^(Queued|Sent)$"))
    entry = alice.locator("ol.timeline li.email").first
    await expect(entry.locator(".preview")).to_have_text("Dear Ms Schulz, the prices are attached.")

    await wait_until(lambda: len(smtp.messages) == 1, what="the message at the SMTP server")
    [received] = smtp.messages
    assert sorted(received.recipients) == [
        "boss@company.test",
        "office@schulz.test",
        "petra@schulz.test",
    ]
    assert b"boss@company.test" not in received.data and b"Bcc" not in received.data
    sent = message_from_bytes(received.data, policy=policy.default)
    assert isinstance(sent, EmailMessage)
    assert sent["From"].addresses[0].display_name == "Müller Bau Support"
    assert sent["Cc"] == "office@schulz.test"
    body = sent.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text == "Dear Ms Schulz,\n\nthe prices are attached.\n\n-- \nAlice Adler\nMüller Bau\n"
    [attachment] = list(sent.iter_attachments())
    assert attachment.get_filename() == "prices.csv"
    assert attachment.get_content() == "item;price\npallet;12\n"
