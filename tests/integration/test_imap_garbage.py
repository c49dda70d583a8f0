"""The mailbox worker against a server that sends garbage: it reconnects, never dies.

A real Dovecot cannot be made to send a malformed line, so this is the one
place with a fake server: a few lines of IMAP on a loopback socket, correct
except for the one answer a scenario garbles on the first connection. Every
other IMAP test runs against Dovecot (test_mail_sync.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from core.mail.models import EmailMessage
from crmcomms.app import build_services, mailbox_worker
from crmcomms.config import MailboxSettings, Settings
from crmcomms.mail.imap import Endpoint, ImapClient, ImapProtocolError, connect
from crmcomms.mail.sync import SyncTuning
from crmcomms.services import Services
from tests.mail_servers import running
from tests.waits import wait_for_event

FAST = SyncTuning(backoff_initial=0.05, backoff_max=0.2, timeout=5)
RAW = b"From: a@example.org\r\nMessage-ID: <1@example.org>\r\nSubject: hi\r\n\r\nHallo\r\n"
EXAMINE_OK = [b"* 1 EXISTS", b"* OK [UIDVALIDITY 7] ok", b"* OK [UIDNEXT 2] ok"]
SIZES_OK = [b"* 1 FETCH (UID 1 RFC822.SIZE %d)" % len(RAW)]
BODY_OK = [b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(RAW) + RAW + b")"]


@dataclass
class FakeImap:
    """Answers LOGIN, CAPABILITY, EXAMINE and UID FETCH for one message; on the first
    connection, the command named in ``garbled`` gets the given lines instead."""

    garbled: dict[bytes, list[bytes]]
    connections: int = 0
    closed: list[int] = field(default_factory=list)
    port: int = 0

    def answers(self, verb: bytes, first: bool) -> list[bytes]:
        if first and verb in self.garbled:
            return self.garbled[verb]
        normal = {
            b"CAPABILITY": [b"* CAPABILITY IMAP4rev1"],
            b"EXAMINE": EXAMINE_OK,
            b"UID FETCH 1:*": SIZES_OK,
            b"UID FETCH 1": BODY_OK,
        }
        return normal.get(verb, [])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, self.connections = self.connections, self.connections + 1
        writer.write(b"* OK fake IMAP ready\r\n")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                tag, _, command = line.rstrip(b"\r\n").partition(b" ")
                verb = _verb(command)
                for answer in self.answers(verb, number == 0):
                    writer.write(answer + b"\r\n")
                if verb == b"LOGOUT":
                    writer.write(b"* BYE bye\r\n")
                writer.write(tag + b" OK done\r\n")
                await writer.drain()
        self.closed.append(number)
        writer.close()


def _verb(command: bytes) -> bytes:
    if command.startswith(b"UID FETCH"):
        return b" ".join(command.split()[:3])
    return command.split(b" ", 1)[0]


@contextlib.asynccontextmanager
async def fake_imap(garbled: dict[bytes, list[bytes]]) -> AsyncIterator[FakeImap]:
    fake = FakeImap(garbled)
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake


@pytest.fixture
async def svc(migrated: Settings) -> AsyncIterator[Services]:
    services = build_services(migrated)
    yield services
    await services.engine.dispose()


def box(port: int) -> MailboxSettings:
    return MailboxSettings.model_validate(
        {
            "name": "support",
            "address": "support@company.test",
            "imap_host": "127.0.0.1",
            "imap_port": port,
            "imap_tls": "none",
            "username": "crm",
            "password": "pw",
            "folders": ["INBOX"],
            "poll_interval": 30.0,
        }
    )


SCENARIOS: dict[str, dict[bytes, list[bytes]]] = {
    "EXISTS without a number": {b"EXAMINE": [b"* EXISTS", *EXAMINE_OK[1:]]},
    "garbled UIDVALIDITY": {b"EXAMINE": [b"* 1 EXISTS", b"* OK [UIDVALIDITY 7x] ok"]},
    "UIDVALIDITY of 5000 digits": {b"EXAMINE": [b"* OK [UIDVALIDITY " + b"7" * 5000 + b"]"]},
    "UID out of range": {b"UID FETCH 1:*": [b"* 1 FETCH (UID 99999999999 RFC822.SIZE 5)"]},
    "huge literal size": {b"UID FETCH 1": [b"* 1 FETCH (UID 1 BODY[] {99999999999999}"]},
    "non-UTF-8 CAPABILITY": {b"CAPABILITY": [b"* CAPABILITY IMAP4rev1 \xff\xfe"]},
}


@pytest.mark.parametrize("garbled", SCENARIOS.values(), ids=SCENARIOS.keys())
async def test_the_worker_survives_a_garbled_answer_and_syncs_after_reconnecting(
    svc: Services, garbled: dict[bytes, list[bytes]]
) -> None:
    async with fake_imap(garbled) as server:
        worker = mailbox_worker(svc, box(server.port), FAST)
        async with running(worker.run) as task:
            await wait_for_event(worker.round_done, what="a round after the garbage")
            assert not task.done()
        async with svc.sessions() as session:
            stored = await session.scalar(select(func.count()).select_from(EmailMessage))
    assert stored == 1
    protocol_error = any(b"CAPABILITY" not in verb for verb in garbled)
    assert server.connections == (2 if protocol_error else 1)


@pytest.mark.parametrize(
    ("garbled", "check"),
    [
        ({b"EXAMINE": [b"* EXISTS"]}, lambda c: c.examine("INBOX")),
        ({b"UID FETCH 1": [b"* 1 FETCH (UID 1 BODY[] {99999999999999}"]},
         lambda c: c.fetch_bodies([1])),
    ],
)  # fmt: skip
async def test_the_client_raises_imap_protocol_error_with_the_cause(
    garbled: dict[bytes, list[bytes]], check: Callable[[ImapClient], Awaitable[object]]
) -> None:
    async with fake_imap(garbled) as server:
        endpoint = Endpoint("127.0.0.1", server.port, "none", "crm", "pw", timeout=5)
        with pytest.raises(ImapProtocolError):
            async with connect(endpoint) as client:
                await check(client)
