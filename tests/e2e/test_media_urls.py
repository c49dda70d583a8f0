"""Attachments and inline images load through signed URLs: no login token in any URL."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from playwright.async_api import Page, expect

from tests.e2e.conftest import SignIn, give_address, store_received
from tests.integration.telephony_harness import Daemon

PIXEL = base64.b64decode(  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def test_attachments_and_inline_images_use_signed_urls(
    daemon: Daemon, sign_in: SignIn
) -> None:
    petra = daemon.contact_ids["01715550123"]
    await give_address(daemon, petra, "petra@schulz.test")
    mail = EmailMessage()
    mail["From"] = "Petra Schulz <petra@schulz.test>"
    mail["To"] = "support@company.test"
    mail["Subject"] = "Offer with a logo"
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = "<offer-logo@schulz.test>"
    mail.set_content("See the offer.")
    mail.add_alternative('<p>Our logo: <img src="cid:logo@schulz.test"></p>', subtype="html")
    html = mail.get_body(("html",))
    assert html is not None
    html.add_related(PIXEL, "image", "png", cid="<logo@schulz.test>")
    mail.add_attachment(b"%PDF-1.4 offer", maintype="application", subtype="pdf", filename="o.pdf")
    await store_received(daemon, mail.as_bytes(), [petra])

    alice = await sign_in("alice")
    await alice.goto(f"/#/contact/{petra}")
    entry = alice.locator("ol.timeline li.email")
    await entry.get_by_role("button", name="Show message").click()
    link = entry.locator("ul.attachments a")
    await expect(link).to_have_attribute("href", re.compile(r"[?&]sig="))
    href = await link.get_attribute("href")
    assert href is not None and "token" not in href
    status, body = await alice.evaluate(
        "async (url) => { const r = await fetch(url); return [r.status, await r.text()]; }", href
    )
    assert (status, body) == (200, "%PDF-1.4 offer")
    frame = alice.frame_locator("iframe.mail-html")
    image = frame.locator("img")
    await expect(image).to_have_attribute("src", re.compile(r"/attachments/\d+\?exp=.*&sig="))
    loaded = await image.evaluate(
        """(img) => img.complete ? img.naturalWidth : new Promise((done) => {
            img.addEventListener("load", () => done(img.naturalWidth), { once: true });
            img.addEventListener("error", () => done(0), { once: true });
        })"""
    )
    assert loaded == 1  # the 1x1 logo, loaded by the signed URL
    token = await alice.evaluate("sessionStorage.getItem('crmcomms.token')")
    assert token and all(token not in url for url in await _requested(alice))


async def _requested(page: Page) -> list[str]:
    """Every URL the page loaded (the Performance API's resource entries)."""
    urls: list[str] = await page.evaluate(
        "performance.getEntriesByType('resource').map((e) => e.name)"
    )
    return urls
