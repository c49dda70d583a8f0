"""The mailbox worker against both real IMAP servers: Dovecot and Cyrus (Debian's 3.6).

The servers differ where it matters to a mirror: Cyrus names folders in the ``.``
hierarchy below the personal namespace ``INBOX.`` (``INBOX.Sent``, marked
``\\Sent`` by nothing), has no NOTIFY (so the worker IDLEs on one connection per
folder), and without its ``idled`` IDLE announces new mail only once a minute.
Cyrus runs once per session, each test with a user of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import select

from core.mail.models import EmailLocation, FolderState
from crmcomms.app import mailbox_worker
from crmcomms.services import Services
from tests.cyrus_server import CyrusServer, run_cyrus
from tests.integration.test_mail_live import sent_by_us
from tests.integration.test_mail_sync import FAST, SUPERVISOR, count, mailbox, message, reach
from tests.mail_servers import ImapServer, running
from tests.waits import wait_for_event, wait_until


@pytest.fixture(scope="session")
def cyrus_session() -> Iterator[CyrusServer]:
    """One Cyrus with ``idled`` for the whole test session."""
    with run_cyrus() as server:
        yield server


@pytest.fixture(params=["dovecot", "cyrus"])
def imap(request: pytest.FixtureRequest) -> ImapServer:
    """A real IMAP server with an empty mailbox: a fresh Dovecot, or a new Cyrus user."""
    if request.param == "cyrus":
        server: CyrusServer = request.getfixturevalue("cyrus_session")
        return server.fresh_user()
    dovecot: ImapServer = request.getfixturevalue("dovecot")
    return dovecot


async def test_initial_import_dedupe_and_new_mail_pushed_within_two_seconds(
    svc: Services, imap: ImapServer
) -> None:
    imap.append_many([message(n) for n in range(12)])
    imap.append(message(3))  # the very same message delivered twice
    worker = mailbox_worker(svc, mailbox(imap), FAST)
    subscription = svc.hub.subscribe(SUPERVISOR, None, None)
    async with running(worker.run):
        await wait_for_event(worker.round_done, what="first round")
        assert (await count(svc), await count(svc, EmailLocation)) == (12, 13)
        assert subscription.queue.empty()  # the initial import is not announced
        started = time.monotonic()
        imap.append(message(100, subject="Dringend: Lieferung"))
        event = orjson.loads(await asyncio.wait_for(subscription.next_frame(), timeout=2.0))
        assert time.monotonic() - started < 2.0
    assert (event["type"], event["email"]["subject"]) == ("email.received", "Dringend: Lieferung")
    assert await count(svc) == 13
    assert all(b"\\Seen" not in line for line in imap.flags())


@pytest.fixture
def cyrus(cyrus_session: CyrusServer) -> CyrusServer:
    """A new user on the session's Cyrus."""
    return cyrus_session.fresh_user()


async def test_the_servers_sent_folder_is_found_and_live(svc: Services, imap: ImapServer) -> None:
    imap.append(message(1))
    imap.append(sent_by_us(1), folder=imap.sent)
    worker = mailbox_worker(svc, mailbox(imap), FAST)  # no folders configured: INBOX + Sent
    subscription = svc.hub.subscribe(SUPERVISOR, None, None)
    async with running(worker.run):
        await wait_for_event(worker.round_done, what="first round")
        assert await count(svc) == 2
        started = time.monotonic()
        imap.append(sent_by_us(2), folder=imap.sent)
        event = orjson.loads(await asyncio.wait_for(subscription.next_frame(), timeout=2.0))
        assert time.monotonic() - started < 2.0
    assert (event["type"], event["email"]["subject"]) == ("email.sent", "Re: Anfrage 2")
    async with svc.sessions() as session:
        folders = list(await session.scalars(select(EmailLocation.folder)))
    assert sorted(folders) == sorted(["INBOX", imap.sent, imap.sent])


async def test_uidvalidity_change_resyncs_without_duplicates(
    svc: Services, imap: ImapServer
) -> None:
    archive = imap.prefix + "Archive"
    if isinstance(imap, CyrusServer):
        imap.create(archive)  # Dovecot's configuration creates it
    raws = [message(n) for n in range(4)]
    imap.append_many(raws, folder=archive)
    box = mailbox(imap, folders=("INBOX", "Archive"), poll_interval=0.05)
    worker = mailbox_worker(svc, box, FAST)
    async with running(worker.run):
        await reach(svc, 4)
        old = await _uidvalidity(svc, archive)
        imap.recreate(archive)
        imap.append_many([*raws[2:], message(9)], folder=archive)

        async def resynced() -> bool:
            return await _uidvalidity(svc, archive) not in (None, old)

        await wait_until(resynced, what="resync after UIDVALIDITY change")
        await reach(svc, 5)
    assert await count(svc) == 5
    async with svc.sessions() as session:
        locations = (await session.scalars(select(EmailLocation))).all()
    assert sorted(loc.uid for loc in locations) == [1, 2, 3]
    assert {loc.folder for loc in locations} == {archive}


async def _uidvalidity(svc: Services, folder: str) -> int | None:
    async with svc.sessions() as session:
        state = await session.get(FolderState, ("support", folder), populate_existing=True)
        return None if state is None or state.last_uid == 0 else state.uidvalidity


@pytest.fixture(scope="session")
def cyrus_without_idled() -> Iterator[CyrusServer]:
    """Cyrus as Debian configures it: no ``idled``, IDLE looks every ``imapidlepoll`` (60 s)."""
    with run_cyrus(idled=False) as server:
        yield server


async def test_cyrus_without_idled_is_found_out_and_polled(
    svc: Services, cyrus_without_idled: CyrusServer, caplog: pytest.LogCaptureFixture
) -> None:
    imap = cyrus_without_idled.fresh_user()
    imap.append(message(1))
    box = mailbox(imap, poll_interval=0.3, folder_poll_interval=0.3)
    worker = mailbox_worker(svc, box, FAST)

    def found_out() -> bool:
        return any(WARNING in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.INFO, logger="crmcomms.mail"):
        async with running(worker.run):
            await wait_for_event(worker.round_done, what="first round")
            # mail arriving at its own pace, not in step with the worker's rounds (one
            # landing just before an IDLE is named at once: the warning takes a few)
            with deliveries(imap, every=0.4) as delivered:
                await wait_until(found_out, what="the warning that IDLE does not deliver")
            await reach(svc, 1 + len(delivered))
            started = time.monotonic()
            imap.append(message(99))
            await reach(svc, 2 + len(delivered))
            assert time.monotonic() - started < 2.0  # polled, not Cyrus's 60 s


WARNING = "IDLE did not announce new mail in INBOX"


@contextlib.contextmanager
def deliveries(server: ImapServer, every: float) -> Iterator[list[int]]:
    """New mail into INBOX every ``every`` seconds until the block ends (the numbers
    delivered are in the list yielded)."""
    stop = threading.Event()
    delivered: list[int] = []

    def deliver() -> None:
        while not stop.wait(every):  # the pace of the load, not a wait for a result
            server.append(message(100 + len(delivered)))
            delivered.append(100 + len(delivered))

    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    try:
        yield delivered
    finally:
        stop.set()
        thread.join()
