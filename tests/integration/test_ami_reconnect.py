"""How fast the AMI client finds a lost link and gets back in, against the real replay
server on 127.0.0.1 (an outage is the server stopped; a black hole is its pings paused)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from crmcomms.ami.client import AmiClient
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.config import AmiSettings
from tests.conftest import free_port
from tests.integration.test_ami_client import FIXTURES, SECRET, Inbox, running

#: Loopback connect + banner + Login, with two busy cores shared by everyone.
LOGIN_MARGIN = 0.25


async def link_is(client: AmiClient, connected: bool) -> None:
    """Return once ``client.connected == connected`` (no timeout: callers bound it)."""
    while client.connected != connected:
        client.link_changed.clear()
        await client.link_changed.wait()


@pytest.fixture
async def server() -> AsyncIterator[AmiReplayServer]:
    async with AmiReplayServer("crm", SECRET) as replay_server:
        yield replay_server


@contextlib.asynccontextmanager
async def pbx(port: int) -> AsyncIterator[AmiReplayServer]:
    async with AmiReplayServer("crm", SECRET, port=port) as server:
        yield server


async def test_back_within_a_second_after_a_five_second_outage() -> None:
    port = free_port()
    settings = AmiSettings(host="127.0.0.1", port=port, username="crm", secret=SECRET)
    # the jitter source at its largest: every retry as late as the schedule allows
    client = AmiClient(settings, Inbox(), random=lambda: 1.0)
    loop = asyncio.get_running_loop()
    async with running(client):
        async with pbx(port):
            async with asyncio.timeout(5):
                await link_is(client, True)
        async with asyncio.timeout(5):
            await link_is(client, False)
        with contextlib.suppress(TimeoutError):  # the PBX stays down 5 s: nobody gets in
            await asyncio.wait_for(link_is(client, True), 5)
        assert not client.connected
        attempts = client.connect_attempts
        async with pbx(port) as server:
            back = loop.time()
            await server.wait_logged_in(1, within=5)
            gap = loop.time() - back
    assert attempts >= 7  # 1 + retries after 0.25, 0.5, 1, 1, 1, 1 s: never parked
    assert gap <= 1.0 + LOGIN_MARGIN, f"logged in {gap:.2f} s after the PBX came back"
    assert client.reconnects == 1


async def test_silent_link_found_within_ten_seconds_with_the_defaults(
    server: AmiReplayServer,
) -> None:
    settings = AmiSettings(host="127.0.0.1", port=server.port, username="crm", secret=SECRET)
    assert (settings.ping_interval, settings.ping_timeout) == (5.0, 3.0)
    client = AmiClient(settings, Inbox(), random=lambda: 0.0)
    loop = asyncio.get_running_loop()
    async with running(client):
        async with asyncio.timeout(5):
            await link_is(client, True)
        server.pause_pings = True  # black hole from right after the login's answer
        silent = loop.time()
        async with asyncio.timeout(12):
            await link_is(client, False)
        found = loop.time() - silent
        await server.wait_logged_in(2)
    assert found <= 10.0
    assert client.last_error is not None
    assert client.last_error.endswith("no reply to Ping within 3 s")


async def test_a_busy_link_with_late_pongs_stays_up(server: AmiReplayServer) -> None:
    settings = AmiSettings(
        host="127.0.0.1",
        port=server.port,
        username="crm",
        secret=SECRET,
        ping_interval=0.05,
        ping_timeout=0.1,
    )
    inbox = Inbox()
    client = AmiClient(settings, inbox, random=lambda: 0.0)
    async with running(client), asyncio.TaskGroup() as group:
        async with asyncio.timeout(5):
            await link_is(client, True)
        server.pause_pings = True
        capture = FIXTURES / "queue-ringall-102-answers.ami"
        traffic = group.create_task(server.replay(capture, speed=100.0, loop=True))

        def unanswered() -> int:
            return sum(1 for a in server.actions if a.fields.get("Action") == "Ping")

        await server.wait_for(lambda: unanswered() >= 8, within=10, what="8 unanswered pings")
        traffic.cancel()
        assert client.connected and client.reconnects == 0
    assert server.logins == 1
    assert inbox.messages
