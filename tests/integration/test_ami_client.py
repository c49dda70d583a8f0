"""AmiClient against the AMI replay server over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from crmcomms.ami.capture import load_capture
from crmcomms.ami.client import AmiClient, check_login
from crmcomms.ami.errors import AmiActionError, AmiNotConnected, AmiTimeout
from crmcomms.ami.framing import AmiFramer
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.config import AmiSettings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ami"
CAPTURES = sorted(FIXTURES.glob("*.ami"))
SECRET = "s3cr3t-never-logged"
WAIT = 5.0


class Inbox:
    """What on_message received, with a way to wait for more."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self._arrived = asyncio.Event()

    def __call__(self, message: dict[str, str]) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_count(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()


class Connections:
    """An on_connected hook that counts its calls."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    async def __call__(self, client: AmiClient) -> None:
        assert client.connected  # the client that logged in, to send actions on
        self.count += 1
        self._changed.set()

    async def wait_count(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


def file_events(path: Path) -> list[dict[str, str]]:
    """The Event blocks AmiFramer finds in a whole capture file."""
    return [b for b in AmiFramer().feed(path.read_bytes()) if isinstance(b, dict) and "Event" in b]


def settings_for(server: AmiReplayServer, **overrides: object) -> AmiSettings:
    values: dict[str, object] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": server.port,
        "username": "crm",
        "secret": SECRET,
    }
    values.update(overrides)
    return AmiSettings.model_validate(values)


@pytest.fixture
async def server() -> AsyncIterator[AmiReplayServer]:
    async with AmiReplayServer("crm", SECRET) as replay_server:
        yield replay_server


@asynccontextmanager
async def running(client: AmiClient) -> AsyncIterator[AmiClient]:
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def make_client(
    settings: AmiSettings,
    inbox: Inbox,
    connections: Connections | None = None,
    random: Callable[[], float] = lambda: 0.0,
) -> AmiClient:
    return AmiClient(settings, inbox, on_connected=connections, random=random)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
async def test_every_event_delivered_in_order(server: AmiReplayServer, capture: Path) -> None:
    inbox = Inbox()
    expected = file_events(capture)
    async with running(make_client(settings_for(server), inbox)) as client:
        await server.wait_logged_in(1)
        await server.replay(capture)
        await inbox.wait_count(len(expected))
    assert inbox.messages == expected
    assert client.messages_received == len(expected)
    assert client.malformed_blocks == 0


async def test_utf8_character_split_across_writes(server: AmiReplayServer) -> None:
    inbox = Inbox()
    async with running(make_client(settings_for(server), inbox)):
        await server.wait_logged_in(1)
        # The first write ends inside 'ü' (0xC3 0xBC); the marker event proves the
        # client has read it before the rest is sent.
        await server.send_raw(b"Event: Marker\r\n\r\nEvent: Newchannel\r\nCallerIDName: J\xc3")
        await inbox.wait_count(1)
        await server.send_raw(b"\xbcrgen M\xc3")
        await server.send_raw(b"\xbcller\r\nUniqueid: 1.1\r\n\r\n")
        await inbox.wait_count(2)
    assert inbox.messages[1] == {
        "Event": "Newchannel",
        "CallerIDName": "Jürgen Müller",
        "Uniqueid": "1.1",
    }


async def test_stray_lf_terminator_and_malformed_block(
    server: AmiReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    async with running(make_client(settings_for(server), inbox)) as client:
        await server.wait_logged_in(1)
        await server.send_raw(
            b"Event: A\r\nX: 1\r\n\n"
            b"Event: Broken\r\nthis is no header\r\n\r\n"
            b"Event: B\r\nY: 2\r\n\r\n"
        )
        await inbox.wait_count(2)
    assert inbox.messages == [{"Event": "A", "X": "1"}, {"Event": "B", "Y": "2"}]
    assert client.malformed_blocks == 1
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


async def test_wrong_secret_logs_once_and_retries_slowly(
    server: AmiReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="crmcomms")
    cap = 0.05
    settings = settings_for(server, secret="wrong-" + SECRET, reconnect_max_delay=cap)
    loop = asyncio.get_running_loop()
    async with running(make_client(settings, Inbox(), random=lambda: 1.0)) as client:
        await server.wait_for(lambda: server.failed_logins >= 1)
        started = loop.time()
        await server.wait_for(lambda: server.failed_logins >= 5)
        elapsed = loop.time() - started
    # 4 retries, each at the cap delay: no retry storm.
    assert elapsed >= 4 * cap * 0.9
    assert server.connections <= 1 + elapsed / (cap * 0.9) + 1
    assert not client.connected
    assert client.last_error == "login refused: Authentication failed"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"AMI login as crm refused by 127.0.0.1:{server.port}: Authentication failed"
        " — check ami.username / ami.secret"
    ]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_silent_link_reconnects_and_never_pings_before_login(
    server: AmiReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crmcomms")
    settings = settings_for(server, ping_interval=0.05, ping_timeout=0.1)
    connections = Connections()
    async with running(make_client(settings, Inbox(), connections)) as client:
        await server.wait_for(lambda: any(a.fields["Action"] == "Ping" for a in server.actions))
        server.pause_pings = True
        await server.wait_logged_in(2)
        await connections.wait_count(2)
        assert client.reconnects == 1
    by_connection: dict[int, list[str]] = {}
    for action in server.actions:
        by_connection.setdefault(action.connection, []).append(action.fields["Action"])
    assert all(actions[0] == "Login" for actions in by_connection.values())
    assert all(actions.count("Login") == 1 for actions in by_connection.values())
    down = [r.getMessage() for r in caplog.records if "down" in r.getMessage()]
    assert down[0] == (
        f"AMI link down: connection to 127.0.0.1:{server.port} lost:"
        " no reply to Ping within 0.1 s; retrying"
    )
    up = [r.getMessage() for r in caplog.records if "link up" in r.getMessage()]
    assert len(up) >= 2
    assert "after 1 attempt(s)" in up[1]


async def test_drop_mid_capture_reconnects_and_resyncs(
    server: AmiReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crmcomms")
    capture = FIXTURES / "queue-ringall-102-answers.ami"
    blocks = load_capture(capture)
    expected = file_events(capture)
    half = len(blocks) // 2
    inbox, connections = Inbox(), Connections()
    async with running(make_client(settings_for(server), inbox, connections)) as client:
        await connections.wait_count(1)
        await server.replay(blocks[:half])
        await server.send_raw(b"Event: Newstate\r\nChannel: PJSIP/1")  # cut mid-block
        await inbox.wait_count(half)
        await server.drop_clients()
        await connections.wait_count(2)
        await server.replay(capture)
        await inbox.wait_count(half + len(expected))
    assert inbox.messages == expected[:half] + expected
    assert client.malformed_blocks == 0
    assert client.reconnects == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost: connection closed by the server; retrying" in m for m in messages) == 1


async def test_send_action_and_list_action(server: AmiReplayServer) -> None:
    capture = FIXTURES / "inbound-direct-answered.ami"
    blocks = load_capture(capture)
    first_hangup = next(i for i, b in enumerate(blocks) if b.fields.get("Event") == "Hangup")
    alive = [
        b.fields["Uniqueid"] for b in blocks[:first_hangup] if b.fields.get("Event") == "Newchannel"
    ]
    inbox, connections = Inbox(), Connections()
    async with running(make_client(settings_for(server), inbox, connections)) as client:
        await connections.wait_count(1)
        await server.replay(blocks[:first_hangup])
        items = await client.send_list_action({"Action": "CoreShowChannels"})
        pong = await client.send_action({"Action": "Ping"})
        originate = {"Action": "Originate", "Channel": "PJSIP/101", "Exten": "0171"}
        queued = await client.send_action(originate)
        with pytest.raises(AmiActionError, match="Invalid/unknown command"):
            await client.send_action({"Action": "NoSuchThing"})
        server.pause_pings = True
        with pytest.raises(AmiTimeout):
            await client.send_action({"Action": "Ping"}, timeout=0.05)
        await inbox.wait_count(first_hangup)
    assert len(alive) == 2
    assert [item["Uniqueid"] for item in items] == alive
    assert {"Channel", "Linkedid", "ChannelStateDesc", "BridgeId", "Duration"} <= items[0].keys()
    assert all(item["Event"] == "CoreShowChannel" for item in items)
    assert pong["Ping"] == "Pong"
    assert queued["Message"] == "Originate successfully queued"
    originated = [a.fields for a in server.actions if a.fields["Action"] == "Originate"]
    assert [o["Exten"] for o in originated] == ["0171"]
    assert len(inbox.messages) == first_hangup
    assert not any(m["Event"].startswith("CoreShowChannel") for m in inbox.messages)


async def test_send_action_without_link_raises(server: AmiReplayServer) -> None:
    client = make_client(settings_for(server), Inbox())
    with pytest.raises(AmiNotConnected):
        await client.send_action({"Action": "Ping"})


async def test_check_login(server: AmiReplayServer) -> None:
    assert await check_login(settings_for(server)) is None
    wrong = settings_for(server, secret="nope")
    assert await check_login(wrong) == "login refused: Authentication failed"
    assert server.logins == 1
    assert server.failed_logins == 1


async def test_check_login_refused_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = AmiSettings(host="127.0.0.1", port=port)
    assert await check_login(settings) == f"cannot connect to 127.0.0.1:{port}: Connection refused"


async def test_check_login_without_banner() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        result = await check_login(AmiSettings(host="127.0.0.1", port=port), timeout=0.2)
    for writer in writers:
        writer.close()
        await writer.wait_closed()
    assert result == f"no AMI banner received within 0.2 s from 127.0.0.1:{port}"


class CountingRandom:
    """A jitter source returning 0 (retry at once) that counts and signals its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._called = asyncio.Event()

    def __call__(self) -> float:
        self.calls += 1
        self._called.set()
        return 0.0

    async def wait_calls(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.calls < count:
                self._called.clear()
                await self._called.wait()


async def test_outage_logged_once_then_up_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crmcomms")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = AmiSettings(host="127.0.0.1", port=port, username="crm", secret=SECRET)
    jitter, connections = CountingRandom(), Connections()
    client = AmiClient(settings, Inbox(), on_connected=connections, random=jitter)
    async with running(client):
        await jitter.wait_calls(5)
        assert client.last_error == f"cannot connect to 127.0.0.1:{port}: Connection refused"
        async with AmiReplayServer("crm", SECRET, port=port):
            await connections.wait_count(1)
            attempts = client.connect_attempts
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert messages[0] == (
        f"AMI link down: cannot connect to 127.0.0.1:{port}: Connection refused; retrying"
    )
    assert messages[1] == (
        f"AMI link up: logged in to 127.0.0.1:{port} as crm after {attempts - 1} attempt(s),"
        + messages[1].split(",", 1)[1]
    )
    assert attempts >= 6
