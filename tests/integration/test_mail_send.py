"""Sending through the API and the outbox worker, with a real SMTP server and a real Dovecot."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from email import message_from_bytes
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from core.agents import add_agent
from core.db import create_engine
from core.mail import parse_headers
from core.mail.models import EmailLocation, EmailMessage
from core.mail.outbox import INTERRUPTED, Draft, OutgoingAttachment, enqueue
from core.mail.store import Copy, Fetched, StoreOptions, store_messages
from core.migrate import upgrade
from core.models import utcnow
from crmcomms.app import build_app, mailbox_worker, outbox_worker
from crmcomms.config import MailboxSettings, parse_settings
from crmcomms.keys import OUTBOX_WAKEUPS
from crmcomms.mail import blob_store
from crmcomms.mail.check import check_mailbox
from crmcomms.mail.smtp import OutboxWorker, SendTuning
from crmcomms.mail.sync import SyncTuning
from crmcomms.services import SERVICES, Services
from tests.mail_servers import (
    DovecotServer,
    SmtpSink,
    free_port,
    run_smtp,
    running,
)
from tests.waits import wait_until

QUICK = SendTuning(retry_initial=0.05, retry_max=0.2, timeout=5)
SUPERVISOR_NAME = "boss"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with run_smtp(started=False) as sink:
        yield sink


def box_values(dovecot: DovecotServer, smtp: SmtpSink, **overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "support",
        "address": "support@company.test",
        "imap_host": dovecot.host,
        "imap_port": dovecot.port,
        "imap_tls": "none",
        "username": dovecot.user,
        "password": dovecot.password,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_tls": "none",
        "poll_interval": 0.2,
    }
    values.update(overrides)
    return values


@pytest.fixture
async def client(
    tmp_path: Path, dovecot: DovecotServer, smtp: SmtpSink
) -> AsyncIterator[TestClient[Any, Any]]:
    raw = {
        "general": {"data_dir": str(tmp_path / "data")},
        "http": {"port": 0},
        "mailboxes": [box_values(dovecot, smtp)],
    }
    settings = parse_settings(raw, env={})
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    await engine.dispose()
    app = build_app(settings, own_workers=False)  # the tests run the workers themselves
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


@pytest.fixture
async def token(client: TestClient[Any, Any]) -> str:
    svc = client.app[SERVICES]
    async with svc.sessions.begin() as session:
        await add_agent(session, SUPERVISOR_NAME, "pw-boss-secret", ("100",), role="supervisor")
    resp = await client.post(
        "/api/login", json={"username": SUPERVISOR_NAME, "password": "pw-boss-secret"}
    )
    return str((await resp.json())["token"])


def outbox(client: TestClient[Any, Any]) -> OutboxWorker:
    svc: Services = client.app[SERVICES]
    return outbox_worker(svc, svc.settings.mailboxes[0], client.app[OUTBOX_WAKEUPS], QUICK)


async def state_of(svc: Services, email_id: int) -> str | None:
    async with svc.sessions() as session:
        message = await session.get(EmailMessage, email_id, populate_existing=True)
        return message.state if message else None


async def wait_state(svc: Services, email_id: int, state: str) -> None:
    async def reached() -> bool:
        return await state_of(svc, email_id) == state

    await wait_until(reached, what=f"e-mail {email_id} {state}")


async def post(client: TestClient[Any, Any], token: str, **body: Any) -> dict[str, Any]:
    body.setdefault("to", ["kunde@example.org"])
    body.setdefault("subject", "Ihr Angebot")
    body.setdefault("text", "Guten Tag,\nanbei das Angebot.")
    resp = await client.post("/api/emails", json=body, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 202, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_smtp_down_then_up_delivers_once_and_sent_copy_is_not_reimported(
    client: TestClient[Any, Any], token: str, smtp: SmtpSink, dovecot: DovecotServer
) -> None:
    svc: Services = client.app[SERVICES]
    subscription = svc.hub.subscribe(_Boss(), None, None)
    attachment = base64.b64encode(b"%PDF-1.4 offer").decode()
    queued = await post(
        client,
        token,
        attachments=[{"filename": "Angebot.pdf", "content_type": "application/pdf",
                      "content_base64": attachment}],
    )  # fmt: skip
    assert queued["state"] == "queued"
    worker = outbox(client)
    sync = mailbox_worker(svc, svc.settings.mailboxes[0], SyncTuning(backoff_initial=0.05))
    async with running(worker.run), running(sync.run):

        async def deferred() -> bool:
            async with svc.sessions() as session:
                message = await session.get(EmailMessage, queued["id"], populate_existing=True)
                return message is not None and message.attempts >= 2

        await wait_until(deferred, what="two failed attempts while SMTP is down")
        # still in the outbox (a third attempt may be under way)
        assert await state_of(svc, queued["id"]) in ("queued", "sending")
        smtp.start()
        await wait_state(svc, queued["id"], "sent")

        async def filed() -> bool:
            async with svc.sessions() as session:
                rows = await session.scalars(select(EmailLocation.folder))
                return "Sent" in set(rows)

        await wait_until(filed, what="the Sent copy synced back")
    assert len(smtp.messages) == 1
    delivered = message_from_bytes(smtp.messages[0].data)
    assert delivered["Subject"] == "Ihr Angebot"
    async with svc.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EmailMessage)) == 1
        stored = await session.get(EmailMessage, queued["id"])
    assert stored is not None and f"<{stored.message_id}>" == delivered["Message-ID"]
    events = [
        orjson.loads(subscription.queue.get_nowait()) for _ in range(subscription.queue.qsize())
    ]
    assert [e["type"] for e in events] == ["email.sent"]
    headers = {"Authorization": f"Bearer {token}"}
    one = await (await client.get(f"/api/emails/{queued['id']}", headers=headers)).json()
    assert one["attachments"][0]["filename"] == "Angebot.pdf"
    resp = await client.get(f"/api/emails/{queued['id']}/attachments/0", headers=headers)
    assert resp.status == 200 and await resp.read() == b"%PDF-1.4 offer"
    assert resp.headers["Content-Disposition"].startswith("attachment;")


class _Boss:
    role = "supervisor"
    extensions: frozenset[str] = frozenset()
    sees_everything = True


async def test_permanent_rejection_fails_with_the_server_reply(
    client: TestClient[Any, Any], token: str, smtp: SmtpSink
) -> None:
    svc: Services = client.app[SERVICES]
    smtp.handler.mode = "reject"
    smtp.start()
    subscription = svc.hub.subscribe(_Boss(), None, None)
    queued = await post(client, token)
    async with running(outbox(client).run):
        await wait_state(svc, queued["id"], "failed")
    async with svc.sessions() as session:
        message = await session.get(EmailMessage, queued["id"])
    assert message is not None and message.error is not None
    assert "550" in message.error and "no such user" in message.error
    event = orjson.loads(subscription.queue.get_nowait())
    assert event["type"] == "email.failed" and "550" in event["email"]["error"]
    assert smtp.handler.attempts == 1


async def test_reply_threads_and_restart_mid_send_sends_once(
    client: TestClient[Any, Any], token: str, smtp: SmtpSink
) -> None:
    svc: Services = client.app[SERVICES]
    smtp.start()
    first = await post(client, token, subject="Termin")
    reply = await post(client, token, subject="Re: Termin", in_reply_to=first["id"])
    async with svc.sessions.begin() as session:  # as if the daemon died while sending
        await session.execute(
            update(EmailMessage).where(EmailMessage.id == reply["id"]).values(state="sending")
        )
    async with running(outbox(client).run):
        await wait_state(svc, first["id"], "sent")
        await wait_state(svc, reply["id"], "sent")
    assert len(smtp.messages) == 2
    sent = {
        message_from_bytes(m.data)["Subject"]: message_from_bytes(m.data) for m in smtp.messages
    }
    parent_id = sent["Termin"]["Message-ID"]
    assert sent["Re: Termin"]["In-Reply-To"] == parent_id
    assert sent["Re: Termin"]["References"] == parent_id
    assert reply["thread_id"] == first["thread_id"]
    headers = {"Authorization": f"Bearer {token}"}
    listed = await (
        await client.get(f"/api/emails?thread={first['thread_id']}", headers=headers)
    ).json()
    assert {e["id"] for e in listed["emails"]} == {first["id"], reply["id"]}


async def test_post_validates_addresses_and_mailbox(
    client: TestClient[Any, Any], token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    bad = await client.post("/api/emails", json={"to": ["nobody"]}, headers=headers)
    assert bad.status == 422 and "to.0" in (await bad.json())["error"]
    unknown = await client.post(
        "/api/emails", json={"to": ["a@b.de"], "mailbox": "sales"}, headers=headers
    )
    assert unknown.status == 422
    anonymous = await client.post("/api/emails", json={"to": ["a@b.de"]})
    assert anonymous.status == 401


async def test_check_mailbox_reports_login_and_connection_problems(
    dovecot: DovecotServer, smtp: SmtpSink
) -> None:
    smtp.start()
    good = MailboxSettings.model_validate(box_values(dovecot, smtp))
    checked = await check_mailbox(good)
    assert checked.problems == [] and checked.folders == ["INBOX", "Sent"]
    wrong = MailboxSettings.model_validate(
        box_values(dovecot, smtp, password="nope", smtp_port=free_port())
    )
    problems = (await check_mailbox(wrong, timeout=5)).problems
    assert len(problems) == 2
    assert "IMAP" in problems[0] and "login refused" in problems[0]
    assert "SMTP" in problems[1]


# --- poison: nothing one request sends can stop the outbox ---------------------------------


def _events(subscription: Any) -> list[dict[str, Any]]:
    queue = subscription.queue
    return [orjson.loads(queue.get_nowait()) for _ in range(queue.qsize())]


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"to": ["a@b.example\u0000"]}, "to.0", "U+0000"),
        ({"to": ["a@b.example\r\nBcc: x@evil.example"]}, "to.0", "U+000D"),
        ({"cc": ["ok@b.example", "a\nb@b.example"]}, "cc.1", "U+000A"),
        ({"subject": "Hallo\r\nBcc: x@evil.example"}, "subject", "U+000D"),
        ({"subject": "Hallo\u2028Welt"}, "subject", "U+2028"),
        ({"subject": "x" * 999}, "subject", "998"),
        ({"to": ['"' * 48000 + "a@x.example"]}, "to.0", "254"),
        ({"to": ["a" * 65 + "@x.example"]}, "to.0", "local part 64"),
        ({"to": ['"quoted"@x.example']}, "to.0", "not an e-mail address"),
        ({"to": [f"r{i}@x.example" for i in range(60)], "cc": [f"c{i}@x.ex" for i in range(60)]},
         "cc", "at most 100"),
        ({"attachments": [{"filename": "a\u0000.pdf", "content_base64": ""}]},
         "attachments.0.filename", "U+0000"),
    ],
)  # fmt: skip
async def test_post_rejects_bad_header_input_naming_the_field_and_queues_nothing(
    client: TestClient[Any, Any], token: str, body: dict[str, Any], field: str, says: str
) -> None:
    body = {"to": ["kunde@example.org"], "text": "x", **body}
    resp = await client.post("/api/emails", json=body, headers={"Authorization": f"Bearer {token}"})
    error = (await resp.json())["error"]
    assert resp.status == 422 and error.startswith(f"{field}:") and says in error, error
    async with client.app[SERVICES].sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EmailMessage)) == 0


async def test_pathological_address_is_answered_at_once(
    client: TestClient[Any, Any], token: str
) -> None:
    """Was 6 s of compose on the event loop; now refused by its length before any parse.
    A correctness check with a generous bound: the speed figure is bench/mail_input.py's."""
    body = {"to": ['"' * 48000 + "a@x.example"], "text": "x"}
    started = time.perf_counter()
    resp = await client.post("/api/emails", json=body, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 422
    assert time.perf_counter() - started < 1.0


async def test_idn_domain_is_sent_in_its_ascii_form(
    client: TestClient[Any, Any], token: str, smtp: SmtpSink
) -> None:
    smtp.start()
    queued = await post(client, token, to=["info@bücher.example"])
    async with running(outbox(client).run):
        await wait_state(client.app[SERVICES], queued["id"], "sent")
    assert smtp.messages[0].recipients == ["info@xn--bcher-kva.example"]


async def _enqueue(svc: Services, to: str) -> int:
    """Queue a message as the API did before it checked addresses."""
    draft = Draft("support", "support@company.test", (to,), subject="s", text="x")
    async with svc.sessions.begin() as session:
        message = await enqueue(session, draft, blob_store(svc.settings), utcnow())
    return message.id


async def test_a_message_that_can_never_be_sent_fails_and_the_next_one_goes(
    client: TestClient[Any, Any], token: str, smtp: SmtpSink
) -> None:
    svc: Services = client.app[SERVICES]
    smtp.start()
    subscription = svc.hub.subscribe(_Boss(), None, None)
    poison = await _enqueue(svc, "a@b.example\x00")  # queued by an older version
    good = await post(client, token)
    async with running(outbox(client).run) as task:
        await wait_state(svc, good["id"], "sent")
        await wait_state(svc, poison, "failed")
        assert not task.done()
    async with svc.sessions() as session:
        failed = await session.get(EmailMessage, poison)
    assert failed is not None and failed.error and "control character" in failed.error
    assert [m.recipients for m in smtp.messages] == [["kunde@example.org"]]
    kinds = {e["email"]["id"]: e["type"] for e in _events(subscription) if "email" in e}
    assert kinds == {poison: "email.failed", good["id"]: "email.sent"}


async def test_a_message_interrupted_at_two_starts_in_a_row_fails_instead_of_looping(
    client: TestClient[Any, Any], token: str, smtp: SmtpSink
) -> None:
    svc: Services = client.app[SERVICES]
    smtp.start()
    subscription = svc.hub.subscribe(_Boss(), None, None)
    once, twice = await post(client, token, subject="once"), await post(client, token)
    async with svc.sessions.begin() as session:  # as left by two stops mid-send
        await session.execute(
            update(EmailMessage).where(EmailMessage.id == once["id"]).values(state="sending")
        )
        await session.execute(
            update(EmailMessage)
            .where(EmailMessage.id == twice["id"])
            .values(state="sending", error=INTERRUPTED)
        )
    async with running(outbox(client).run):
        await wait_state(svc, once["id"], "sent")
    assert await state_of(svc, twice["id"]) == "failed"
    assert [message_from_bytes(m.data)["Subject"] for m in smtp.messages] == ["once"]
    events = [e for e in _events(subscription) if e["type"] == "email.failed"]
    assert [e["email"]["id"] for e in events] == [twice["id"]]
    assert "two stops in a row" in events[0]["email"]["error"]


async def test_enqueue_composes_in_the_parser_processes(client: TestClient[Any, Any]) -> None:
    """The daemon composes in its mail parser processes: what crosses over must pickle."""
    svc: Services = client.app[SERVICES]
    pdf = OutgoingAttachment("Angebot.pdf", "application/pdf", b"%PDF-1.4 offer")
    draft = Draft("support", "support@company.test", ("kunde@example.org",), subject="Grüße",
                  text="Hallo", attachments=(pdf,))  # fmt: skip
    with ProcessPoolExecutor(1, mp_context=get_context("forkserver")) as pool:
        async with svc.sessions.begin() as session:
            message = await enqueue(
                session, draft, blob_store(svc.settings), utcnow(), executor=pool
            )
    assert message.subject == "Grüße" and message.state == "queued"
    assert [a["address"] for a in message.to] == ["kunde@example.org"]


async def test_a_lost_attachment_file_is_extracted_again_from_the_raw_message(
    client: TestClient[Any, Any], token: str
) -> None:
    svc: Services = client.app[SERVICES]
    content = b"%PDF-1.4 offer"
    encoded = base64.b64encode(content).decode()
    part = {"filename": "Angebot.pdf", "content_base64": encoded}
    queued = await post(client, token, attachments=[part])
    blobs = blob_store(svc.settings)
    path = blobs.path(hashlib.sha256(content).hexdigest())
    path.unlink()
    resp = await client.get(
        f"/api/emails/{queued['id']}/attachments/0", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200 and await resp.read() == content
    assert path.read_bytes() == content


async def test_email_list_pages_with_a_cursor_stable_under_new_arrivals(
    client: TestClient[Any, Any], token: str
) -> None:
    svc: Services = client.app[SERVICES]

    async def deliver(numbers: range, date: str) -> None:
        fetched = []
        for n in numbers:
            raw = (
                f"From: k{n}@example.org\r\nTo: support@company.test\r\nSubject: Nr {n}\r\n"
                f"Date: {date}\r\nMessage-ID: <{n}.page@example.org>\r\n\r\nHallo\r\n"
            ).encode()
            fetched.append(Fetched(Copy("support", "INBOX", 1, n), raw, parse_headers(raw)))
        async with svc.sessions.begin() as session:
            blobs = blob_store(svc.settings)
            await session.run_sync(store_messages, fetched, blobs, StoreOptions())

    # 12 share one date (ties broken by id), 8 are older
    await deliver(range(1, 13), "Tue, 02 Jan 2024 10:00:00 +0000")
    await deliver(range(13, 21), "Mon, 01 Jan 2024 10:00:00 +0000")
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[str] = []
    url: str | None = "/api/emails?limit=7"
    while url is not None:
        page = await (await client.get(url, headers=headers)).json()
        seen += [e["subject"] for e in page["emails"]]
        if len(seen) == 7:  # new mail arriving between pages shifts nothing
            await deliver(range(21, 24), "Wed, 03 Jan 2024 10:00:00 +0000")
        url = f"/api/emails?limit=7&before={page['next']}" if page["next"] else None
    assert seen == [f"Nr {n}" for n in [*range(12, 0, -1), *range(20, 12, -1)]]
    bad = await client.get("/api/emails?before=bm9wZQ", headers=headers)
    assert bad.status == 422 and "before" in (await bad.json())["error"]
