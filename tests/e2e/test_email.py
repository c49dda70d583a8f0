"""Writing e-mail from the contact card: the outbox state followed live, a real SMTP server."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from playwright.async_api import expect

from tests.e2e.conftest import Sections, SignIn, give_address, sending_mailbox
from tests.integration.telephony_harness import Daemon
from tests.mail_servers import SinkHandler, SmtpSink, run_smtp


@dataclass
class GatedHandler(SinkHandler):
    """The sink, holding each message at DATA until the test opens the gate: the
    page must show "queued" before the outcome can exist."""

    gate: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with run_smtp(started=False) as sink:
        sink.handler = handler = GatedHandler()
        sink.start()
        try:
            yield sink
        finally:
            handler.gate.set()  # let a held message go, or the sink cannot stop


@pytest.fixture
def daemon_settings(smtp: SmtpSink) -> Sections:
    return sending_mailbox(smtp.port)


class LogSeen(logging.Handler):
    """Sets an event when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def sent_copy_refused() -> Iterator[LogSeen]:
    """Tells when the outbox worker has tried, and failed, to file a copy in Sent."""
    handler = LogSeen("cannot file copies in Sent yet")
    logger = logging.getLogger("crmcomms.mail.smtp")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_write_email_from_the_card_shows_queued_then_sent_live(
    daemon: Daemon, sign_in: SignIn, smtp: SmtpSink, sent_copy_refused: LogSeen
) -> None:
    petra = daemon.contact_ids["01715550123"]
    await give_address(daemon, petra, "petra@schulz.test")
    alice = await sign_in("alice")
    await alice.goto(f"/#/contact/{petra}")
    await alice.get_by_role("button", name="Write e-mail").click()

    composer = alice.locator("form.compose")
    await expect(composer.get_by_label("To")).to_have_value("petra@schulz.test")
    await composer.get_by_label("Subject").fill("Your quote")
    await composer.get_by_label("Message").fill("Dear Ms Schulz,\n\nthe prices are attached.")
    async with alice.expect_response("**/api/emails") as posted:
        await composer.get_by_role("button", name="Send").click()
    assert (await posted.value).status == 202
    status = composer.get_by_role("status")
    entry = alice.locator("ol.timeline li.email").first
    await expect(status).to_have_text("Queued")
    await expect(entry.locator(".subject")).to_have_text("Your quote")
    await expect(entry.locator(".from")).to_have_text("To: petra@schulz.test")
    await expect(entry.locator(".mail-state")).to_have_text("Queued")
    assert smtp.messages == []

    assert isinstance(smtp.handler, GatedHandler)
    smtp.handler.gate.set()
    await expect(status).to_have_text("Sent")
    await expect(entry.locator(".mail-state")).to_have_text("Sent")
    [received] = smtp.messages
    assert received.sender == "support@company.test"
    assert received.recipients == ["petra@schulz.test"]
    message = message_from_bytes(received.data, policy=policy.default)
    assert message["Subject"] == "Your quote"
    body = message.get_body()
    assert body is not None and "the prices are attached." in body.get_content()

    await asyncio.wait_for(sent_copy_refused.seen.wait(), 10)
    await alice.reload()
    entry = alice.locator("ol.timeline li.email")
    await expect(entry).to_have_count(1)
    await expect(entry.locator(".mail-state")).to_have_text("Sent")
    [listed] = (await daemon.api(f"/api/emails?contact={petra}", "alice"))["emails"]
    assert (listed["direction"], listed["state"], listed["error"]) == ("out", "sent", None)
    assert len(smtp.messages) == 1
