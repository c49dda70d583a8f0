"""GET /api/contacts/{id}/history pages with a keyset cursor: every entry exactly once,
the 501st reachable, entries sharing a timestamp neither repeated nor skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from core.db import SessionFactory
from core.mail.models import EmailContact, EmailMessage
from core.models import Call, CallContact, Contact, Note, Task
from crmcomms.services import SERVICES
from tests.conftest import AgentFactory

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


async def _busy_contact(sessions: SessionFactory, notes: int = 520) -> tuple[int, int]:
    """A contact with ``notes`` notes (mostly sharing one of a few timestamps), calls,
    e-mails and tasks, several at the very same moment; (contact id, entries)."""
    async with sessions.begin() as session:
        contact = Contact(display_name="Vielschreiber GmbH")
        session.add(contact)
        await session.flush()
        same = [T0 - timedelta(minutes=n % 4) for n in range(notes)]
        session.add_all(
            Note(contact_id=contact.id, body=f"n{n}", created_at=same[n]) for n in range(notes)
        )
        for n in range(40):
            call = Call(
                linkedid=f"L{n}",
                direction="inbound",
                status="answered",
                started_at=T0 - timedelta(minutes=n % 6),
            )
            call.contacts.append(CallContact(contact_id=contact.id, match="exact"))
            session.add(call)
        for n in range(30):
            mail = EmailMessage(
                mailbox="sales",
                dedupe_key=f"k{n}",
                content_hash=f"h{n}",
                thread_id=f"t{n}",
                subject=f"mail {n}",
                from_=[{"name": "", "address": "kunde@example.org"}],
                to=[{"name": "", "address": "sales@company.test"}],
                sort_at=T0 - timedelta(minutes=n % 3),
            )
            session.add(mail)
            await session.flush()
            session.add(EmailContact(email_id=mail.id, contact_id=contact.id))
        session.add_all(
            Task(contact_id=contact.id, title=f"t{n}", created_at=T0) for n in range(10)
        )
    return contact.id, notes + 40 + 30 + 10


async def _walk(client: TestClient[Any, Any], token: str, contact: int, limit: int) -> list[str]:
    """Every page from the newest, following ``next``; the entries' kind-id keys."""
    keys: list[str] = []
    url = f"/api/contacts/{contact}/history?limit={limit}"
    while True:
        resp = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        assert len(page["items"]) <= limit
        keys += [f"{item['kind']}-{item['id']}" for item in page["items"]]
        if page["next"] is None:
            return keys
        assert len(page["items"]) == limit
        url = f"/api/contacts/{contact}/history?limit={limit}&before={page['next']}"


async def test_every_entry_once_in_order_across_pages(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("boss", (), role="supervisor")
    contact, total = await _busy_contact(app_client.app[SERVICES].sessions)
    big = await _walk(app_client, token, contact, 200)
    assert len(big) == total > 500 and len(set(big)) == total  # the 501st is reachable
    small = await _walk(app_client, token, contact, 7)  # page edges inside runs of ties
    assert small == big


async def test_new_entries_do_not_shift_the_next_page(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("boss", (), role="supervisor")
    sessions = app_client.app[SERVICES].sessions
    contact, total = await _busy_contact(sessions, notes=30)
    auth = {"Authorization": f"Bearer {token}"}
    first = await (
        await app_client.get(f"/api/contacts/{contact}/history?limit=50", headers=auth)
    ).json()
    async with sessions.begin() as session:  # arrive between two pages, at the same moment
        session.add_all(Note(contact_id=contact, body="late", created_at=T0) for _ in range(5))
    url = f"/api/contacts/{contact}/history?limit=200&before={first['next']}"
    rest = await (await app_client.get(url, headers=auth)).json()
    seen = [f"{i['kind']}-{i['id']}" for i in first["items"] + rest["items"]]
    assert len(seen) == len(set(seen)) == total and rest["next"] is None


async def test_a_cursor_that_is_not_one_is_refused(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("boss", (), role="supervisor")
    contact, _ = await _busy_contact(app_client.app[SERVICES].sessions, notes=1)
    for bad in ("x", "MjAyNA", "bm90fGF8Y3Vyc29y"):
        resp = await app_client.get(
            f"/api/contacts/{contact}/history?before={bad}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 422, bad
        assert "before" in await resp.text()
