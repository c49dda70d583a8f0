"""A contact with a long history opens with one page; scrolling to its end loads the older ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from core.models import Note
from crmcomms.services import SERVICES
from tests.e2e.conftest import SignIn
from tests.integration.telephony_harness import Daemon

NOTES = 75  # four pages of the page's 20


async def test_scrolling_to_the_end_loads_older_entries(daemon: Daemon, sign_in: SignIn) -> None:
    contact = daemon.contact_ids["01715550123"]
    start = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    async with daemon.client.app[SERVICES].sessions.begin() as session:
        session.add_all(
            Note(contact_id=contact, body=f"note {n}", created_at=start + timedelta(minutes=n))
            for n in range(NOTES)
        )
    alice = await sign_in("alice")
    await alice.goto(f"/#/contact/{contact}")
    notes = alice.locator("ol.timeline li.note")
    await expect(notes.first.locator(".body")).to_have_text(f"note {NOTES - 1}")
    await expect(notes).to_have_count(20)  # one page: the rest waits for the scroll
    for shown in (40, 60, NOTES):
        await notes.last.scroll_into_view_if_needed()  # the end of the list comes into view
        await expect(notes).to_have_count(shown)
    await expect(notes.last.locator(".body")).to_have_text("note 0")
    await expect(alice.locator("section.history button.more")).to_be_hidden()
