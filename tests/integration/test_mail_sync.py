"""The mailbox worker against a real Dovecot: sync, IDLE, UIDVALIDITY, cuts, restarts, corpus."""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage as Mime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from core.agents import AgentIdentity
from core.history import DEFAULT_SOURCES, contact_history
from core.mail import parse_headers
from core.mail.email_json import email_json, emails_json
from core.mail.models import EmailAttachment, EmailLocation, EmailMessage, EmailRaw, FolderState
from core.mail.queries import EmailFilter, email_history, list_emails
from core.mail.store import Copy, Fetched, StoreOptions, store_messages
from core.migrate import upgrade
from core.models import Contact, EmailAddress
from crmcomms.app import build_services, mailbox_worker
from crmcomms.config import MailboxSettings
from crmcomms.mail import blob_store
from crmcomms.mail.imap import Endpoint, ImapConnectionError, connect
from crmcomms.mail.sync import SyncTuning
from crmcomms.services import Services
from tests.conftest import PostgresServer, make_settings
from tests.mail_servers import DovecotServer, ImapServer, TcpCutter, running
from tests.waits import wait_for_event, wait_until

CORPUS = Path(__file__).parent.parent / "fixtures" / "mail"
FAST = SyncTuning(batch_messages=7, backoff_initial=0.05, backoff_max=0.2, auth_retry=0.1)
SUPERVISOR = AgentIdentity(1, "boss", "supervisor", frozenset())


def message(
    n: int, *, sender: str = "Kunde <kunde@example.org>", words: int = 50, **headers: str
) -> bytes:
    """A small realistic message number ``n``."""
    mime = Mime()
    mime["From"] = sender
    mime["To"] = "Support <support@company.test>"
    mime["Subject"] = headers.pop("subject", f"Anfrage {n}")
    mime["Date"] = headers.pop("date", f"Mon, 0{1 + n % 9} Jan 2024 10:00:00 +0100")
    mime["Message-ID"] = headers.pop("message_id", f"<{n}.test@example.org>")
    for name, value in headers.items():
        mime[name.replace("_", "-")] = value
    mime.set_content(f"Hallo, Nachricht {n}.\n" + "Text\n" * words)
    return mime.as_bytes()


def mailbox(server: ImapServer, **overrides: object) -> MailboxSettings:
    values: dict[str, object] = {
        "name": "support",
        "address": "support@company.test",
        "imap_host": server.host,
        "imap_port": server.port,
        "imap_tls": "none",
        "username": server.user,
        "password": server.password,
        "poll_interval": 30.0,
    }
    values.update(overrides)
    return MailboxSettings.model_validate(values)


async def count(svc: Services, model: type[object] = EmailMessage) -> int:
    async with svc.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def reach(svc: Services, n: int, model: type[object] = EmailMessage) -> None:
    async def done() -> bool:
        return await count(svc, model) >= n

    await wait_until(done, what=f"{n} rows of {model.__name__}")


async def test_initial_then_incremental_sync_never_marks_read(
    svc: Services, dovecot: DovecotServer
) -> None:
    dovecot.append_many([message(n) for n in range(20)])
    worker = mailbox_worker(svc, mailbox(dovecot, poll_interval=0.1), FAST)
    async with running(worker.run):
        await wait_for_event(worker.round_done, what="first round")
        assert await count(svc) == 20
        dovecot.append(message(100))
        await reach(svc, 21)
        for _ in range(3):  # later rounds must not re-import the newest message (n:* trap)
            worker.round_done.clear()
            await wait_for_event(worker.round_done, what="another round")
    assert await count(svc) == 21
    assert await count(svc, EmailLocation) == 21
    async with svc.sessions() as session:
        state = await session.get(FolderState, ("support", "INBOX"))
    assert state is not None and state.last_uid == 21
    assert all(b"\\Seen" not in line for line in dovecot.flags())
    health = svc.health.get("mailbox:support")
    assert health is not None and health.state == "ok"


async def test_idle_pushes_email_received_within_two_seconds(
    svc: Services, dovecot: DovecotServer
) -> None:
    dovecot.append(message(1))
    worker = mailbox_worker(svc, mailbox(dovecot), FAST)
    subscription = svc.hub.subscribe(SUPERVISOR, None, None)
    async with running(worker.run):
        await wait_for_event(worker.round_done, what="first round")
        assert subscription.queue.empty()  # the initial import is not announced
        dovecot.append(message(2, subject="Dringend: Lieferung"))
        frame = await asyncio.wait_for(subscription.next_frame(), timeout=2.0)
    event = orjson.loads(frame)
    assert event["type"] == "email.received"
    assert event["email"]["subject"] == "Dringend: Lieferung"
    assert event["email"]["mailbox"] == "support"
    async with svc.sessions() as session:  # one shape: the push is what the API lists
        listed = (await session.run_sync(emails_json, await list_emails(session, EmailFilter())))[0]
    unchanged = {"body_parsed", "preview"}  # the body may have been parsed since the push
    assert event["email"].keys() == listed.keys()
    assert {k: v for k, v in event["email"].items() if k not in unchanged} == {
        k: v for k, v in listed.items() if k not in unchanged
    }


async def test_uidvalidity_change_resyncs_without_duplicates(
    svc: Services, dovecot: DovecotServer
) -> None:
    raws = [message(n) for n in range(5)]
    dovecot.append_many(raws, folder="Archive")
    box = mailbox(dovecot, folders=("INBOX", "Archive"), poll_interval=0.05)
    worker = mailbox_worker(svc, box, FAST)
    async with running(worker.run):
        await reach(svc, 5)
        async with svc.sessions() as session:
            before = await session.get(FolderState, ("support", "Archive"))
            assert before is not None
            old_validity = before.uidvalidity
        dovecot.recreate("Archive")
        dovecot.append_many([*raws[2:], message(9)], folder="Archive")

        async def resynced() -> bool:
            async with svc.sessions() as session:
                state = await session.get(
                    FolderState, ("support", "Archive"), populate_existing=True
                )
                return (
                    state is not None and state.uidvalidity != old_validity and state.last_uid == 4
                )

        await wait_until(resynced, what="resync after UIDVALIDITY change")
    assert await count(svc) == 6
    async with svc.sessions() as session:
        locations = (await session.scalars(select(EmailLocation))).all()
    assert {loc.uidvalidity for loc in locations} == {locations[0].uidvalidity}
    assert sorted(loc.uid for loc in locations) == [1, 2, 3, 4]


async def test_same_message_in_two_folders_is_one_message_with_two_locations(
    svc: Services, dovecot: DovecotServer
) -> None:
    raw = message(7)
    dovecot.append(raw)
    dovecot.append(raw.replace(b"Subject:", b"X-Moved-By: sieve\nSubject:"), folder="Archive")
    worker = mailbox_worker(svc, mailbox(dovecot, folders=("INBOX", "Archive")), FAST)
    async with running(worker.run):
        await reach(svc, 2, EmailLocation)
    assert await count(svc) == 1
    async with svc.sessions() as session:
        folders = set(await session.scalars(select(EmailLocation.folder)))
    assert folders == {"INBOX", "Archive"}


async def test_connection_cut_mid_fetch_loses_and_doubles_nothing(
    svc: Services, dovecot: DovecotServer
) -> None:
    dovecot.append_many([message(n, words=1000) for n in range(60)])  # 5 kB each
    async with TcpCutter(dovecot.port, cut_after=[60_000, 150_000]) as proxy:
        box = mailbox(dovecot, imap_port=proxy.port)
        worker = mailbox_worker(svc, box, FAST)
        async with running(worker.run):
            await wait_for_event(worker.round_done, timeout=20, what="complete round")
        assert proxy.cuts == 2
    assert await count(svc) == 60
    assert await count(svc, EmailLocation) == 60


async def test_restart_mid_sync_continues_from_last_committed_uid(
    svc: Services, dovecot: DovecotServer
) -> None:
    # enough messages that the first run cannot finish before it is stopped,
    # even now that headers are stored in pipelined bulk batches
    total = 600
    dovecot.append_many([message(n) for n in range(total)])
    tuning = SyncTuning(batch_messages=5)
    async with running(mailbox_worker(svc, mailbox(dovecot), tuning).run):
        await reach(svc, 5)
    interrupted = await count(svc)
    second = mailbox_worker(svc, mailbox(dovecot), tuning)
    async with running(second.run):
        await wait_for_event(second.round_done, timeout=30, what="round after restart")
    assert interrupted < total, "the first run finished before the restart"
    assert await count(svc) == total
    assert await count(svc, EmailLocation) == total


async def test_awkward_corpus_is_stored_and_nothing_dropped(
    svc: Services, dovecot: DovecotServer
) -> None:
    files = sorted(CORPUS.glob("*.eml"))
    dovecot.append_many([path.read_bytes() for path in files])
    dovecot.append(files[0].read_bytes())  # the very same message delivered twice
    worker = mailbox_worker(svc, mailbox(dovecot), FAST)
    async with running(worker.run):
        await wait_for_event(worker.round_done, what="first round")
    assert await count(svc, EmailLocation) == len(files) + 1
    assert await count(svc) == len(files)  # 16a/16b share a Message-ID but are two messages
    assert await count(svc, EmailRaw) == len(files)
    async with svc.sessions() as session:
        rows = (await session.scalars(select(EmailMessage))).all()
    no_id = [row for row in rows if row.message_id is None]
    assert no_id, "the corpus has messages without Message-ID"
    assert len({row.dedupe_key for row in rows}) == len(rows)


async def test_linking_to_contacts_threading_and_history(
    svc: Services, dovecot: DovecotServer
) -> None:
    async with svc.sessions.begin() as session:
        alice = Contact(display_name="Alice")
        alice.emails.append(EmailAddress(address="alice@example.org"))
        session.add(alice)
    first = message(1, sender="Alice <ALICE@Example.org>", subject="Angebot 42")
    reply = message(
        2,
        sender="Support <support@company.test>",
        subject="Re: Angebot 42",
        In_Reply_To="<1.test@example.org>",
    ).replace(b"To: Support <support@company.test>", b"To: alice@example.org")
    by_subject = message(3, sender="alice@example.org", subject="AW: Angebot 42")
    unrelated = message(4, sender="bob@example.net", subject="Angebot 42")
    dovecot.append_many([first, reply, by_subject, unrelated])
    worker = mailbox_worker(svc, mailbox(dovecot), FAST)
    async with running(worker.run):
        await reach(svc, 4)
    async with svc.sessions() as session:
        rows = {m.message_id: m for m in await session.scalars(select(EmailMessage))}
        page = await contact_history(session, [alice.id], sources=(*DEFAULT_SOURCES, email_history))
    history = page.items
    thread = rows["1.test@example.org"].thread_id
    assert rows["2.test@example.org"].thread_id == thread
    assert rows["3.test@example.org"].thread_id == thread
    assert rows["4.test@example.org"].thread_id != thread  # other participants
    assert rows["2.test@example.org"].direction == "out"
    assert [item.data["subject"] for item in history if item.kind == "email"] == [
        "AW: Angebot 42",
        "Re: Angebot 42",
        "Angebot 42",
    ]


async def test_wrong_password_is_reported_once_and_others_keep_syncing(
    svc: Services, dovecot: DovecotServer, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append(message(1))
    bad = mailbox_worker(svc, mailbox(dovecot, name="bad", password="wrong"), FAST)
    good = mailbox_worker(svc, mailbox(dovecot), FAST)
    with caplog.at_level(logging.ERROR, logger="crmcomms.mail.sync"):
        async with running(bad.run), running(good.run):
            await reach(svc, 1)

            async def retried() -> bool:  # Dovecot delays repeated failures by seconds
                return bad.login_failures >= 2

            await wait_until(retried, what="a second login attempt")
    health = svc.health.get("mailbox:bad")
    assert health is not None and health.state == "login refused" and not health.ok
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    assert "check the password" in refused[0].getMessage()


def with_attachment(n: int) -> bytes:
    mime = Mime()
    mime["From"] = "Kunde <kunde@example.org>"
    mime["To"] = "Support <support@company.test>"
    mime["Subject"] = f"Rechnung {n}"
    mime["Date"] = "Mon, 01 Jan 2024 10:00:00 +0100"
    mime["Message-ID"] = f"<att{n}.test@example.org>"
    mime.set_content(f"Rechnung {n} anbei.\n")
    mime.add_alternative(f"<p>Rechnung {n} anbei.</p>", subtype="html")
    mime.add_attachment(b"%PDF-1.4 " + bytes([n]) * 100, maintype="application",
                        subtype="pdf", filename=f"r{n}.pdf")  # fmt: skip
    return mime.as_bytes()


async def test_bodies_and_attachments_follow_the_headers(
    svc: Services, dovecot: DovecotServer
) -> None:
    dovecot.append_many([with_attachment(n) for n in range(12)])
    worker = mailbox_worker(svc, mailbox(dovecot), FAST)
    async with running(worker.run):
        await wait_for_event(worker.bodies_done, what="bodies parsed")
    async with svc.sessions() as session:
        rows = (await session.scalars(select(EmailMessage).order_by(EmailMessage.id))).all()
        parts = (await session.scalars(select(EmailAttachment))).all()
    assert len(rows) == 12 and all(row.body_parsed for row in rows)
    assert rows[3].text == "Rechnung 3 anbei.\n"
    assert (rows[3].html or "").strip() == "<p>Rechnung 3 anbei.</p>"
    assert sorted(part.filename or "" for part in parts) == sorted(f"r{n}.pdf" for n in range(12))
    assert all(blob_store(svc.settings).read(part.sha256) is not None for part in parts)


async def test_message_stored_with_headers_only_lists_and_is_parsed_after_a_restart(
    svc: Services, dovecot: DovecotServer
) -> None:
    raw = with_attachment(1)
    async with svc.sessions.begin() as session:  # phase 1 committed, then the daemon died
        copy = Copy("support", "INBOX", 1, 1)
        fetched = [Fetched(copy, raw, parse_headers(raw))]
        await session.run_sync(store_messages, fetched, blob_store(svc.settings), StoreOptions())
    async with svc.sessions() as session:
        (listed,) = await list_emails(session, EmailFilter())
    summary = email_json(listed, [])
    assert (summary["subject"], summary["from"][0]["address"]) == (
        "Rechnung 1",
        "kunde@example.org",
    )
    assert summary["date"] == "2024-01-01T09:00:00Z"
    assert summary["body_parsed"] is False and listed.text is None
    worker = mailbox_worker(svc, mailbox(dovecot), FAST)
    assert await worker.parse_some_bodies()
    assert not await worker.parse_some_bodies()
    async with svc.sessions() as session:
        message = await session.get(EmailMessage, listed.id)
        parts = (await session.scalars(select(EmailAttachment))).all()
    assert message is not None and message.body_parsed
    assert message.text == "Rechnung 1 anbei.\n"
    assert [(part.n, part.filename, part.email_id) for part in parts] == [(0, "r1.pdf", listed.id)]


@pytest.mark.postgres
async def test_two_phase_sync_on_postgresql(
    postgres: PostgresServer, dovecot: DovecotServer, tmp_path: Path
) -> None:
    url = postgres.create_database("mailsync")
    services = build_services(make_settings(tmp_path, database={"url": url}))
    try:
        await upgrade(services.engine)
        raws = [with_attachment(n) for n in range(5)] + [message(n) for n in range(10)]
        dovecot.append_many([*raws, raws[0]])
        worker = mailbox_worker(services, mailbox(dovecot), FAST)
        async with running(worker.run):
            await wait_for_event(worker.bodies_done, what="bodies parsed")
        assert await count(services) == 15
        assert await count(services, EmailLocation) == 16
        assert await count(services, EmailAttachment) == 5
        async with services.sessions() as session:
            texts = set(await session.scalars(select(EmailMessage.text)))
        assert "Rechnung 4 anbei.\n" in texts and None not in texts
    finally:
        await services.engine.dispose()


async def test_a_server_that_falls_silent_mid_command_times_out() -> None:
    """One timer per command (not per line) still catches silence within the timeout."""
    answered = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"* OK ready\r\n")
        while line := await reader.readline():
            tag, _, verb = line.decode().partition(" ")
            if verb.startswith("LOGIN"):
                writer.write(f"{tag} OK logged in\r\n".encode())
            elif verb.startswith("CAPABILITY"):
                writer.write(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".encode())
            else:  # part of an answer, then nothing more
                writer.write(b"* 1 FETCH (UID 1 BODY[] {3}\r\nabc)\r\n")
                answered.set()
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = Endpoint("127.0.0.1", port, "none", "crm", "pw", timeout=0.3)
    try:
        async with connect(endpoint) as client:
            with pytest.raises(ImapConnectionError, match="no answer within"):
                await asyncio.wait_for(client.fetch_bodies([1]), timeout=5)
            assert answered.is_set()
    finally:
        server.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()
