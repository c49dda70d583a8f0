"""Every folder live within 2 s on a real Dovecot, while another client keeps changing flags."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time

import orjson
import pytest
from sqlalchemy import select

from core.agents import AgentIdentity
from core.mail.models import EmailLocation
from crmcomms.app import mailbox_worker
from crmcomms.mail.imap import Endpoint, connect
from crmcomms.services import Services
from tests.integration.test_mail_sync import FAST, mailbox, message
from tests.mail_servers import DovecotServer, flag_changes, running
from tests.waits import wait_for_event, wait_until

SUPERVISOR = AgentIdentity(1, "boss", "supervisor", frozenset())


async def test_idle_ends_on_time_however_many_flag_changes_arrive(dovecot: DovecotServer) -> None:
    dovecot.append(message(1))
    endpoint = Endpoint(dovecot.host, dovecot.port, "none", dovecot.user, dovecot.password)
    async with connect(endpoint) as client:
        await client.examine("INBOX")
        with flag_changes(dovecot, every=0.2):
            started = time.monotonic()
            changed = await client.idle(1.5)
            elapsed = time.monotonic() - started
        assert not changed  # flag changes are not new mail
        assert 1.4 < elapsed < 2.5
        assert (await client.examine("INBOX")).exists == 1  # the connection is still usable


def sent_by_us(n: int) -> bytes:
    """A reply an agent sent from their own mail client, filed in Sent by that client."""
    raw = message(n, sender="Support <support@company.test>", subject=f"Re: Anfrage {n}")
    return raw.replace(b"To: Support <support@company.test>", b"To: kunde@example.org")


# notify: Dovecot offers NOTIFY; idle: one more connection IDLEs on Sent;
# poll: no connection to spare, Sent is polled between short IDLE rounds on INBOX
MODES = {
    "notify": (FAST, {}),
    "idle": (dataclasses.replace(FAST, use_notify=False), {}),
    "poll": (dataclasses.replace(FAST, use_notify=False), {"idle_connections": 0}),
}


@pytest.mark.parametrize("mode", MODES)
async def test_mail_filed_in_sent_is_stored_and_pushed_within_two_seconds_while_flags_change(
    svc: Services, dovecot: DovecotServer, mode: str
) -> None:
    dovecot.append(message(1))
    tuning, overrides = MODES[mode]
    box = mailbox(dovecot, poll_interval=30.0, **overrides)
    worker = mailbox_worker(svc, box, tuning)
    subscription = svc.hub.subscribe(SUPERVISOR, None, None)
    async with running(worker.run):
        await wait_for_event(worker.round_done, what="first round")
        with flag_changes(dovecot, every=0.5):
            for n in (2, 3):  # twice: the second after a wait that already saw flag changes
                started = time.monotonic()
                dovecot.append(sent_by_us(n), folder="Sent")
                frame = await asyncio.wait_for(subscription.next_frame(), timeout=2.0)
                event = orjson.loads(frame)
                assert event["type"] == "email.sent", event
                assert event["email"]["subject"] == f"Re: Anfrage {n}"
                assert time.monotonic() - started < 2.0
            dovecot.append(message(4, subject="Neu im Posteingang"))
            frame = await asyncio.wait_for(subscription.next_frame(), timeout=2.0)
            assert orjson.loads(frame)["email"]["subject"] == "Neu im Posteingang"
    async with svc.sessions() as session:
        folders = list(await session.scalars(select(EmailLocation.folder)))
    assert sorted(folders) == ["INBOX", "INBOX", "Sent", "Sent"]


class SilentIdle:
    """A loopback proxy to a real IMAP server that drops what announces new mail (``* n
    EXISTS``, ``* STATUS``) while the client is IDLE: a server whose IDLE never delivers."""

    _NEWS = re.compile(rb"^\* (\d+ EXISTS|STATUS .*)\r\n", re.MULTILINE)

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentIdle:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        idling = [False]

        async def client_to_server() -> None:
            while line := await reader.readline():
                idling[0] = line.rstrip().endswith(b" IDLE")
                up_writer.write(line)

        async def server_to_client() -> None:
            while line := await up_reader.readline():
                if not (idling[0] and self._NEWS.match(line)):
                    writer.write(line)

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except OSError:
            pass
        finally:
            writer.transport.abort()
            up_writer.transport.abort()


async def test_a_server_whose_idle_does_not_deliver_is_found_out_and_polled(
    svc: Services, dovecot: DovecotServer, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append(message(1))
    async with SilentIdle(dovecot.port) as proxy:
        box = mailbox(dovecot, imap_port=proxy.port, poll_interval=0.3, folder_poll_interval=0.3)
        worker = mailbox_worker(svc, box, FAST)
        with caplog.at_level(logging.INFO, logger="crmcomms.mail"):
            async with running(worker.run):
                await wait_for_event(worker.round_done, what="first round")
                for n in (2, 3, 4):
                    dovecot.append(message(n))
                    await wait_until(lambda n=n: _stored(svc, n), what=f"message {n}")
                # the round that stored the last one says so once it has finished
                await wait_until(lambda: _found_out(caplog), what="IDLE found out")


def _found_out(caplog: pytest.LogCaptureFixture) -> bool:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return any("IDLE did not announce new mail in INBOX" in w for w in warnings)


async def _stored(svc: Services, n: int) -> bool:
    async with svc.sessions() as session:
        found = await session.scalars(select(EmailLocation.uid).where(EmailLocation.uid == n))
        return found.first() is not None
