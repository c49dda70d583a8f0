"""The AMI replay server itself: protocol answers, channel table, pacing, fresh ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from crmcomms.ami.capture import load_capture
from crmcomms.ami.framing import AmiFramer, Message, encode_action
from crmcomms.ami.replay import AmiReplayServer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ami"
WAIT = 5.0


class Peer:
    """A bare AMI peer on a socket: sends action blocks, reads blocks back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = AmiFramer()
        self.blocks: list[Message] = []

    async def send(self, **fields: str) -> None:
        self.writer.write(encode_action(fields))
        await self.writer.drain()

    async def receive(self, count: int) -> list[Message]:
        """Wait until ``count`` blocks arrived in total; return them all."""
        async with asyncio.timeout(WAIT):
            while len(self.blocks) < count:
                data = await self.reader.read(65536)
                assert data, f"connection closed after {len(self.blocks)} blocks"
                self.blocks += [b for b in self.framer.feed(data) if isinstance(b, dict)]
        return self.blocks

    async def wait_eof(self) -> None:
        async with asyncio.timeout(WAIT):
            while await self.reader.read(65536):
                pass


@pytest.fixture
async def server() -> AsyncIterator[AmiReplayServer]:
    async with AmiReplayServer("crm", "pw") as replay_server:
        yield replay_server


Connect = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def connect(server: AmiReplayServer) -> AsyncIterator[Connect]:
    """Open peers to the server (logged in unless login=False); all closed at teardown."""
    peers: list[Peer] = []

    async def open_peer(login: bool = True) -> Peer:
        peer = Peer(*await asyncio.open_connection("127.0.0.1", server.port))
        peers.append(peer)
        if login:
            await peer.send(Action="Login", Username="crm", Secret="pw", ActionID="l1")
            assert (await peer.receive(1))[0]["Message"] == "Authentication accepted"
            peer.blocks.clear()
        return peer

    yield open_peer
    for peer in peers:
        peer.writer.close()
        await peer.writer.wait_closed()


def capture_events(name: str) -> list[Message]:
    data = (FIXTURES / name).read_bytes()
    return [b for b in AmiFramer().feed(data) if isinstance(b, dict) and "Event" in b]


async def test_protocol_answers(server: AmiReplayServer, connect: Connect) -> None:
    peer = await connect(login=False)
    await peer.send(Action="Ping", ActionID="p0")
    await peer.send(Action="Login", Username="crm", Secret="pw", ActionID="l1")
    await peer.send(Action="Ping", ActionID="p1")
    await peer.send(Action="Bogus", ActionID="b1")
    await peer.send(Action="Originate", Channel="PJSIP/101", ActionID="o1")
    await peer.send(Action="Logoff", ActionID="x1")
    blocks = await peer.receive(6)
    await peer.wait_eof()
    assert peer.framer.banner == "Asterisk Call Manager/11.0.0"
    assert [(b["ActionID"], b["Response"], b.get("Message", b.get("Ping"))) for b in blocks] == [
        ("p0", "Error", "Permission denied"),
        ("l1", "Success", "Authentication accepted"),
        ("p1", "Success", "Pong"),
        ("b1", "Error", "Invalid/unknown command"),
        ("o1", "Success", "Originate successfully queued"),
        ("x1", "Goodbye", "Thanks for all the fish."),
    ]
    assert [a.fields["Action"] for a in server.actions] == [
        "Ping",
        "Login",
        "Ping",
        "Bogus",
        "Originate",
        "Logoff",
    ]


async def test_refused_login_closes_the_connection(
    server: AmiReplayServer, connect: Connect
) -> None:
    peer = await connect(login=False)
    await peer.send(Action="Login", Username="crm", Secret="bad", ActionID="l1")
    assert (await peer.receive(1))[0]["Message"] == "Authentication failed"
    await peer.wait_eof()
    assert (server.logins, server.failed_logins) == (0, 1)


async def test_core_show_channels_follows_the_replay(
    server: AmiReplayServer, connect: Connect
) -> None:
    name = "inbound-direct-busy"
    facts = json.loads((FIXTURES / f"{name}.json").read_text())["observed"]["channels"]
    blocks = load_capture(FIXTURES / f"{name}.ami")
    first_hangup = next(i for i, b in enumerate(blocks) if b.fields.get("Event") == "Hangup")
    peer = await connect()
    await server.replay(blocks[:first_hangup])
    await peer.send(Action="CoreShowChannels", ActionID="c1")
    received = await peer.receive(first_hangup + 1 + len(facts) + 1)
    response, *items, done = received[first_hangup:]
    await server.replay(blocks[first_hangup:])
    await peer.send(Action="CoreShowChannels", ActionID="c2")
    after = (await peer.receive(len(blocks) + len(facts) + 4))[-2:]
    assert (response["EventList"], response["ActionID"]) == ("start", "c1")
    keys = ("Channel", "Uniqueid", "Linkedid", "CallerIDNum")
    assert [[item[k] for k in keys] for item in items] == [[f[k] for k in keys] for f in facts]
    assert all(item["ActionID"] == "c1" and item["Duration"].count(":") == 2 for item in items)
    assert (done["Event"], done["EventList"], done["ListItems"]) == (
        "CoreShowChannelsComplete",
        "Complete",
        str(len(facts)),
    )
    assert after[1]["ListItems"] == "0"


async def test_recorded_pace_scaled_by_speed(server: AmiReplayServer, connect: Connect) -> None:
    path = FIXTURES / "inbound-direct-busy.ami"
    blocks = load_capture(path)
    times = [b.t for b in blocks if b.t is not None]
    span = max(times) - min(times)
    peer = await connect()
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = await server.replay(path, speed=10)
    elapsed = loop.time() - started
    received = await peer.receive(len(blocks))
    assert sent == len(blocks)
    assert elapsed >= span / 10 * 0.9
    assert received == capture_events("inbound-direct-busy.ami")


async def test_fresh_ids_every_round(server: AmiReplayServer, connect: Connect) -> None:
    name = "queue-ringall-102-answers.ami"
    original = capture_events(name)
    peer = await connect()
    replay = asyncio.create_task(server.replay(FIXTURES / name, loop=True, rewrite_ids=True))
    received = await peer.receive(3 * len(original))
    replay.cancel()
    await asyncio.wait([replay])
    rounds = [received[i * len(original) : (i + 1) * len(original)] for i in range(3)]
    ids = [{e["Uniqueid"] for e in r if "Uniqueid" in e} for r in rounds]
    original_ids = {e["Uniqueid"] for e in original if "Uniqueid" in e}
    assert len({frozenset(s) for s in [*ids, original_ids]}) == 4  # all different
    assert all(len(s) == len(original_ids) for s in ids)
    for events in rounds:
        first = next(e for e in events if e["Event"] == "Newchannel")
        assert {e["Linkedid"] for e in events if "Linkedid" in e} == {first["Uniqueid"]}
        files = [e["Value"] for e in events if e.get("Variable") == "MIXMONITOR_FILENAME"]
        assert files and all(f.endswith(f"/{first['Uniqueid']}.wav") for f in files)
        assert [e["Event"] for e in events] == [e["Event"] for e in original]
