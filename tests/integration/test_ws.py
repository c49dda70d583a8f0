"""GET /ws against a real aiohttp server on 127.0.0.1 with real websocket clients."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web

from crmcomms.push import Audience, PushHub
from crmcomms.web.ws import TOO_SLOW_CODE, shutdown_hook, websocket_handler
from tests.waits import wait_until

WAIT = 10.0  # generous upper bound for any awaited condition; a hang fails loudly


@dataclass(frozen=True)
class Viewer:
    """Test identity shaped like core.agents.AgentIdentity."""

    id: int
    name: str
    role: str
    extensions: frozenset[str]

    @property
    def sees_everything(self) -> bool:
        return self.role in {"supervisor", "admin"}


# A test double for the token store: token -> identity.
TOKENS = {
    "t101": Viewer(1, "ann", "agent", frozenset({"101"})),
    "t102": Viewer(2, "bob", "agent", frozenset({"102"})),
    "tsup": Viewer(3, "sue", "supervisor", frozenset({"200"})),
}


async def authenticate(token: str) -> Viewer | None:
    return TOKENS.get(token)


@dataclass
class Server:
    hub: PushHub
    runner: web.AppRunner
    url: str
    port: int


class Serve(Protocol):
    async def __call__(
        self, *, heartbeat: float = 20.0, queue_size: int = 1_000, buffer_size: int = 10_000
    ) -> Server: ...


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(
        *, heartbeat: float = 20.0, queue_size: int = 1_000, buffer_size: int = 10_000
    ) -> Server:
        hub = PushHub(queue_size=queue_size, buffer_size=buffer_size)
        app = web.Application()
        handler = websocket_handler(hub, authenticate, heartbeat=heartbeat, close_timeout=2.0)
        app.router.add_get("/ws", handler)
        app.on_shutdown.append(shutdown_hook(hub))
        runner = web.AppRunner(app, shutdown_timeout=5.0)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        return Server(hub, runner, f"http://127.0.0.1:{port}/ws", port)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
        yield client


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=WAIT)
    assert message.type is WSMsgType.TEXT, message
    decoded: dict[str, Any] = orjson.loads(message.data)
    return decoded


async def connect(
    session: aiohttp.ClientSession, server: Server, token: str, **params: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Open a websocket and read its hello (which proves the hub registered it)."""
    ws = await session.ws_connect(server.url, params={"token": token, **params})
    hello = await next_json(ws)
    assert hello["type"] == "hello"
    return ws, hello


async def read_until_seq(ws: aiohttp.ClientWebSocketResponse, last: int) -> list[int]:
    seqs: list[int] = []
    while not seqs or seqs[-1] < last:
        seqs.append((await next_json(ws))["seq"])
    return seqs


def ring(hub: PushHub, extension: str, **extra: Any) -> int:
    return hub.publish("call.ringing", {"agent": extension, **extra}, Audience.of(extension)).seq


async def test_token_and_parameters_are_checked_before_upgrade(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    server = await serve()
    for params in ({}, {"token": "nope"}):
        async with session.get(server.url, params=params) as response:
            assert response.status == 401
            assert "error" in await response.json()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(server.url)
    assert refused.value.status == 401
    async with session.get(server.url, params={"token": "t101", "since": "abc"}) as response:
        assert response.status == 400
        assert "since" in (await response.json())["error"]
    async with session.get(server.url, params={"token": "t101"}) as response:
        assert response.status == 400  # a valid token but no websocket upgrade
    headers = {"Authorization": "Bearer t101"}
    async with session.ws_connect(server.url, headers=headers) as ws:
        assert (await next_json(ws))["type"] == "hello"


async def test_agent_gets_only_its_events_supervisor_gets_all(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    server = await serve()
    hub = server.hub
    bob, _ = await connect(session, server, "t102")
    sue, _ = await connect(session, server, "tsup")
    ring(hub, "101")  # 1
    ring(hub, "102")  # 2
    hub.publish("task.created", {}, Audience.supervisors_only())  # 3
    ring(hub, "102")  # 4
    last = hub.publish("email.received", {}, Audience.all()).seq  # 5
    assert await read_until_seq(bob, last) == [2, 4, 5]
    assert await read_until_seq(sue, last) == [1, 2, 3, 4, 5]
    await bob.close()
    await sue.close()


async def test_client_ping_gets_pong(serve: Serve, session: aiohttp.ClientSession) -> None:
    server = await serve()
    ws, _ = await connect(session, server, "t101")
    await ws.send_str("not json")
    await ws.send_str('{"type": "ping"}')
    assert await next_json(ws) == {"type": "pong"}
    await ws.close()


async def test_reconnect_with_since_gets_missed_events_in_order(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    server = await serve()
    hub = server.hub
    ws, hello = await connect(session, server, "t101")
    first = [ring(hub, "101") for _ in range(3)]
    assert await read_until_seq(ws, first[-1]) == [1, 2, 3]
    await ws.close()
    await wait_until(lambda: hub.clients == 0, WAIT, "the server to drop the closed client")
    missed = [ring(hub, "101"), ring(hub, "102"), ring(hub, "101")]
    ws, hello = await connect(session, server, "t101", since="3", epoch=hello["epoch"])
    assert hello["seq"] == missed[-1]
    live = ring(hub, "101")
    assert await read_until_seq(ws, live) == [4, 6, 7]
    await ws.close()
    ws, _ = await connect(session, server, "t101", since="3", epoch="previous-process")
    assert await next_json(ws) == {"type": "reload", "seq": live}
    await ws.close()


async def test_no_gap_and_no_duplicate_across_reconnects_under_load(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    server = await serve()
    hub = server.hub
    total = 2_000
    stop_publishing = asyncio.Event()

    async def publish() -> None:
        while hub.current_seq < total:
            hub.publish("email.received", {}, Audience.all())
            await asyncio.sleep(0)  # a bare yield so clients interleave (no timed wait)
        stop_publishing.set()

    publisher = asyncio.create_task(publish())
    seen: list[int] = []
    params = {"since": "0"}  # from the very first event, then from the last one seen
    while not seen or seen[-1] < total:
        ws, hello = await connect(session, server, "tsup", **params)
        for _ in range(150):  # read a while, then drop the connection
            seen.append((await next_json(ws))["seq"])
            if seen[-1] == total:
                break
        await ws.close()
        params = {"since": str(seen[-1]), "epoch": hello["epoch"]}
    await asyncio.wait_for(stop_publishing.wait(), WAIT)
    await publisher
    assert seen == list(range(1, total + 1))


@dataclass
class Reader:
    """A client that reads every frame and wakes waiters as it goes."""

    ws: aiohttp.ClientWebSocketResponse
    seqs: list[int] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async for message in self.ws:
            self.seqs.append(orjson.loads(message.data)["seq"])
            self.progress.set()

    async def wait_for_seq(self, seq: int) -> None:
        async with asyncio.timeout(WAIT):
            while not self.seqs or self.seqs[-1] < seq:
                self.progress.clear()
                await self.progress.wait()


async def test_slow_client_is_dropped_and_fast_client_is_not_delayed(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    server = await serve(queue_size=16)
    hub = server.hub
    slow, _ = await connect(session, server, "t101")  # then never reads
    fast = Reader((await connect(session, server, "tsup"))[0])
    reading = asyncio.create_task(fast.run())
    blob = "x" * 16_384
    while hub.overflows == 0:
        assert hub.current_seq < 20_000, "the slow client was never dropped"
        for _ in range(8):
            last = ring(hub, "101", blob=blob)
        await fast.wait_for_seq(last)  # the fast client keeps up batch by batch
    assert fast.seqs == list(range(1, hub.current_seq + 1))
    assert hub.clients == 1
    message = await slow.receive(timeout=WAIT)
    while message.type is WSMsgType.TEXT:  # the slow client catches up on what was sent
        message = await slow.receive(timeout=WAIT)
    assert message.type is WSMsgType.CLOSE, message
    assert (message.data, message.extra) == (TOO_SLOW_CODE, "too slow, reconnect with since")
    await fast.ws.close()
    await reading


async def open_silent_client(
    port: int, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Complete a websocket handshake over raw TCP, then never answer anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status_line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0]
    assert status_line.split()[1] == b"101", status_line
    return reader, writer


async def test_heartbeat_drops_a_dead_client_and_keeps_a_live_one(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    server = await serve(heartbeat=0.2)
    live = Reader((await connect(session, server, "t101"))[0])
    reading = asyncio.create_task(live.run())
    dead, dead_writer = await open_silent_client(server.port, "t101")
    await wait_until(lambda: server.hub.clients == 2, WAIT, "both clients registered")
    received = await asyncio.wait_for(dead.read(), WAIT)  # until the server cuts it
    assert b"\x89\x00" in received  # the server pinged it (FIN+PING, empty payload)
    await wait_until(lambda: server.hub.clients == 1, WAIT, "the dead client to be dropped")
    await live.wait_for_seq(ring(server.hub, "101"))  # the live one survived the pings
    dead_writer.close()
    await dead_writer.wait_closed()
    await live.ws.close()
    await reading


async def test_shutdown_with_connected_clients_leaves_no_task(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    server = await serve()
    readers = [Reader((await connect(session, server, t))[0]) for t in ("t101", "t102", "tsup")]
    reading = [asyncio.create_task(r.run()) for r in readers]
    idle, _ = await connect(session, server, "t101")  # connected but not reading
    ring(server.hub, "101")
    async with asyncio.timeout(WAIT):
        await server.runner.cleanup()
        await asyncio.gather(*reading)
        message = await idle.receive()
        while message.type is WSMsgType.TEXT:
            message = await idle.receive()
    assert [r.ws.close_code for r in readers] == [1001, 1001, 1001]
    assert message.type is WSMsgType.CLOSE and message.data == 1001
    assert server.hub.clients == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}
