"""Per-mailbox visibility (``mailboxes[].visibility``): one rule, mail_readers, for the
push and the API alike. ``team``: every agent; ``addressed``: the agents in To/Cc and
the sender, even for mail linked to a contact; ``linked`` (default): every agent when
linked to a contact, else as ``addressed``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from core.db import SessionFactory
from core.mail.models import EmailContact, EmailMessage
from core.mail.queries import Visibility, mail_readers
from core.models import Agent, Contact, utcnow
from crmcomms.config import Settings, parse_settings
from crmcomms.mail import store_options
from crmcomms.services import SERVICES
from tests.conftest import AgentFactory

BOXES: dict[str, Visibility] = {"shared": "team", "private": "addressed", "sales": "linked"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Three mailboxes, one of each visibility (``sales`` by default)."""
    boxes = [
        {"name": name, "address": f"{name}@company.test", "smtp_host": "127.0.0.1"}
        | ({"visibility": visibility} if name != "sales" else {})
        for name, visibility in BOXES.items()
    ]
    raw = {"general": {"data_dir": str(tmp_path / "data")}, "http": {"port": 0}}
    return parse_settings({**raw, "mailboxes": boxes}, env={})


def message(mailbox: str, n: int, to: list[str]) -> EmailMessage:
    return EmailMessage(
        mailbox=mailbox,
        dedupe_key=f"{mailbox}{n}",
        content_hash=f"{mailbox}{n}",
        thread_id=f"{mailbox}{n}",
        subject=f"{mailbox} {n}",
        from_=[{"name": "", "address": "customer@example.com"}],
        to=[{"name": "", "address": a} for a in to],
        sort_at=utcnow() - timedelta(minutes=n),
    )


async def test_each_mailbox_shows_its_mail_as_configured(
    app_client: TestClient[Any, Any], make_agent: AgentFactory, settings: Settings
) -> None:
    anna, token_anna = await make_agent("anna", ("251",))
    bert, token_bert = await make_agent("bert", ("252",))
    sessions: SessionFactory = app_client.app[SERVICES].sessions
    async with sessions.begin() as session:
        await session.execute(
            update(Agent).where(Agent.id == bert.id).values(email="bert@company.test")
        )
        contact = Contact(display_name="Customer")
        mails = {
            "shared, to nobody": message("shared", 1, []),
            "private, linked, to bert": message("private", 2, ["bert@company.test"]),
            "private, linked": message("private", 3, []),
            "sales, linked": message("sales", 4, []),
            "sales, to nobody": message("sales", 5, []),
        }
        session.add_all([contact, *mails.values()])
        await session.flush()
        for key in ("private, linked, to bert", "private, linked", "sales, linked"):
            session.add(EmailContact(email_id=mails[key].id, contact_id=contact.id))
        ids = {key: mail.id for key, mail in mails.items()}
    expected = {
        token_anna: ["shared, to nobody", "sales, linked"],
        token_bert: ["shared, to nobody", "private, linked, to bert", "sales, linked"],
    }
    for token, visible in expected.items():
        headers = {"Authorization": f"Bearer {token}"}
        resp = await app_client.get("/api/emails", headers=headers)
        assert [e["id"] for e in (await resp.json())["emails"]] == [ids[k] for k in visible]
        for key, email_id in ids.items():
            resp = await app_client.get(f"/api/emails/{email_id}", headers=headers)
            assert resp.status == (200 if key in visible else 404), (key, token)
    # the push: the same rule, with the visibility the mailbox's store options carry
    boxes = {box.name: store_options(box).visibility for box in settings.mailboxes}
    assert boxes == BOXES
    async with sessions() as session:
        team = await session.run_sync(mail_readers, False, [], None, boxes["shared"])
        private = await session.run_sync(
            mail_readers, True, ["bert@company.test"], None, boxes["private"]
        )
        sales = await session.run_sync(mail_readers, True, [], None, boxes["sales"])
    assert team.everyone and sales.everyone
    assert not private.everyone and private.agent_ids == {bert.id}
    assert not private.admit(anna.id)


def test_an_unknown_visibility_is_refused_naming_the_key(tmp_path: Path) -> None:
    from crmcomms.config import ConfigError

    box = {"name": "x", "address": "x@company.test", "visibility": "everyone"}
    with pytest.raises(ConfigError, match=r"mailboxes\.0\.visibility"):
        parse_settings({"mailboxes": [box]}, env={})
