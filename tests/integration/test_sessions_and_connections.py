"""Logins (throttle, timing, Argon2 off the loop), websockets ending with their login,
tokens kept out of URLs (websocket tickets, signed media URLs), and slow clients
(header and body timeouts, connection caps), against the daemon's own server
(``crmcomms.app.serve``: the site and runner options the daemon runs with)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.agents import add_agent, hash_token
from core.db import create_engine
from core.migrate import upgrade
from core.models import ApiToken, utcnow
from crmcomms.app import build_app, serve
from crmcomms.config import parse_settings
from crmcomms.services import SERVICES, Services
from crmcomms.web.session import TOKEN_WATCH
from crmcomms.web.signing import KEY_FILE
from crmcomms.web.ws import SESSION_ENDED_CODE
from tests.waits import wait_until

PASSWORD = "right-password-1"


@dataclass
class Daemon:
    """The app served by ``serve()`` on a loopback port, and a client session."""

    url: str
    svc: Services
    http: aiohttp.ClientSession
    app: web.Application

    async def agent(self, name: str, extension: str) -> int:
        async with self.svc.sessions.begin() as session:
            return (await add_agent(session, name, PASSWORD, (extension,))).id

    async def login(self, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        return await self.http.post(
            f"{self.url}/api/login", json={"username": name, "password": password}
        )

    async def token(self, name: str) -> str:
        resp = await self.login(name)
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])

    async def post(self, path: str, token: str, body: Any = None) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {token}"}
        return await self.http.post(f"{self.url}{path}", json=body or {}, headers=headers)

    async def ticket(self, token: str) -> str:
        resp = await self.post("/api/ws-ticket", token)
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["ticket"])


Start = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start the daemon's web server with these ``[http]`` settings (and a mailbox)."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    http = aiohttp.ClientSession()

    async def factory(**values: Any) -> Daemon:
        raw = {
            "general": {"data_dir": str(tmp_path / "data")},
            "http": {"host": "127.0.0.1", "port": 0, **values},
            "mailboxes": [{"name": "sales", "address": "sales@company.test"}],
        }
        settings = parse_settings(raw, env={})
        engine = create_engine(settings.database_url)
        await upgrade(engine)
        await engine.dispose()
        app = build_app(settings, own_workers=False)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.create_task(serve(app, stop, ready.set_result))
        stops.append((stop, task))
        url = await asyncio.wait_for(ready, 10)
        return Daemon(url, app[SERVICES], http, app)

    yield factory
    await http.close()
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 30)


async def timed_healthz(daemon: Daemon) -> float:
    started = time.perf_counter()
    async with daemon.http.get(f"{daemon.url}/healthz") as resp:
        assert resp.status == 200
    return time.perf_counter() - started


# --- login ---------------------------------------------------------------------------


async def test_failed_logins_are_throttled_per_user_and_per_address(start: Start) -> None:
    daemon = await start(login_failures_per_user=3, login_failures_per_address=5)
    await daemon.agent("bob", "301")
    for _ in range(3):
        assert (await daemon.login("bob", "wrong-password")).status == 401
    resp = await daemon.login("bob")  # even the right password waits now
    assert resp.status == 429
    assert await resp.json() == {"error": "too many failed logins, try again later", "status": 429}
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    for name in ("nobody", "nobody"):  # unknown names count alike
        assert (await daemon.login(name, "x")).status == 401
    resp = await daemon.login("carol", "x")  # the address has had 5 failures
    assert resp.status == 429


async def test_a_success_clears_the_users_failures(start: Start) -> None:
    daemon = await start(login_failures_per_user=3)
    await daemon.agent("dan", "302")
    for _ in range(2):
        assert (await daemon.login("dan", "wrong-password")).status == 401
    assert (await daemon.login("dan")).status == 200
    for _ in range(2):
        assert (await daemon.login("dan", "wrong-password")).status == 401
    assert (await daemon.login("dan")).status == 200


async def test_unknown_and_known_users_answer_in_the_same_time(start: Start) -> None:
    daemon = await start()
    await daemon.agent("erin", "303")

    times: dict[str, list[float]] = {"erin": [], "mallory": []}
    await daemon.login("warm-up", "x")  # the dummy hash is made once
    for _ in range(5):  # interleaved, and the fastest of each compared: load is noise
        for name, found in times.items():
            started = time.perf_counter()
            assert (await daemon.login(name, "wrong-password")).status == 401
            found.append(time.perf_counter() - started)
    known, unknown = min(times["erin"]), min(times["mallory"])
    assert 0.5 < unknown / known < 2, (known, unknown)  # before: 1.4 ms against 318 ms


async def test_parallel_bad_logins_do_not_delay_healthz(start: Start) -> None:
    daemon = await start()
    await daemon.agent("frank", "304")
    logins = [
        asyncio.create_task(daemon.login("frank" if i % 2 else f"x{i}", "wrong-password"))
        for i in range(16)
    ]
    delays = []
    while not all(task.done() for task in logins):
        delays.append(await timed_healthz(daemon))
    assert [(await task).status for task in logins] == [401] * 16
    # before: Argon2 on the loop held /healthz 1.2-3 s; now it is a thread's work (the
    # 2 cores of the test machine are shared, so the bound is on the 90th percentile)
    delays.sort()
    assert len(delays) >= 3 and delays[len(delays) * 9 // 10] < 0.1 and delays[-1] < 1, delays


# --- websockets end with their login ---------------------------------------------------


async def close_code(ws: aiohttp.ClientWebSocketResponse, within: float) -> int | None:
    async with asyncio.timeout(within):
        async for message in ws:
            if message.type is aiohttp.WSMsgType.CLOSE:
                break
    return ws.close_code


async def test_a_websocket_is_closed_at_logout(start: Start) -> None:
    daemon = await start()
    await daemon.agent("gina", "305")
    token = await daemon.token("gina")
    other = await daemon.token("gina")  # a second login of the same agent stays open
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        daemon.http.ws_connect(f"{daemon.url}/ws", headers=headers) as ws,
        daemon.http.ws_connect(f"{daemon.url}/ws?token={other}") as kept,
    ):
        assert (await ws.receive_json())["type"] == "hello"
        assert (await kept.receive_json())["type"] == "hello"
        assert (await daemon.http.post(f"{daemon.url}/api/logout", headers=headers)).status == 200
        assert await close_code(ws, within=2) == SESSION_ENDED_CODE
        await kept.send_json({"type": "ping"})
        assert (await kept.receive_json(timeout=2))["type"] == "pong"


async def test_a_websocket_is_closed_when_its_token_expires(start: Start) -> None:
    daemon = await start()
    agent_id = await daemon.agent("hugo", "306")
    token = "short-lived-token-" + "y" * 20
    expires = utcnow() + timedelta(seconds=1.5)
    async with daemon.svc.sessions.begin() as session:
        session.add(ApiToken(token_hash=hash_token(token), agent_id=agent_id, expires_at=expires))
    async with daemon.http.ws_connect(f"{daemon.url}/ws?token={token}") as ws:
        assert (await ws.receive_json())["type"] == "hello"
        assert await close_code(ws, within=5) == SESSION_ENDED_CODE
        assert utcnow() >= expires


# --- slow and numerous clients ----------------------------------------------------------


async def half_sent(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    return reader, writer


async def test_half_sent_requests_cannot_keep_others_out(start: Start) -> None:
    """300 connections that never finish their request head, against a cap of 64:
    /healthz still answers at once; a half-sent head is closed after the header timeout."""
    daemon = await start(max_connections=64, header_timeout_seconds=1.0)
    attackers = [await half_sent(daemon.url) for _ in range(300)]
    try:
        assert await timed_healthz(daemon) < 0.5
        reader, writer = await half_sent(daemon.url)
        attackers.append((reader, writer))
        started = time.perf_counter()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert 0.5 < time.perf_counter() - started < 3
    finally:
        for _, writer in attackers:
            writer.close()
        for _, writer in attackers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_cr_lf_in_a_subject_is_422(start: Start) -> None:
    daemon = await start()
    await daemon.agent("ida", "307")
    headers = {"Authorization": f"Bearer {await daemon.token('ida')}"}
    for subject in ("a\r\nBcc: x@evil.test", "a\nb", "a\rb"):
        body = {"to": ["c@example.com"], "subject": subject, "text": "x"}
        resp = await daemon.http.post(f"{daemon.url}/api/emails", json=body, headers=headers)
        assert resp.status == 422
        assert "subject" in (await resp.json())["error"]


async def test_since_in_other_digits_is_400_not_500(start: Start) -> None:
    daemon = await start()
    await daemon.agent("jan", "308")
    headers = {"Authorization": f"Bearer {await daemon.token('jan')}"}
    for since in ("²", "１", "٣", "-1", "1e3", "9" * 30):
        resp = await daemon.http.get(f"{daemon.url}/ws", params={"since": since}, headers=headers)
        assert resp.status == 400, since
        assert "since" in (await resp.json())["error"]


# --- no token in a URL ------------------------------------------------------------------


async def test_a_websocket_opens_with_a_one_time_ticket(start: Start) -> None:
    daemon = await start()
    await daemon.agent("kim", "309")
    token = await daemon.token("kim")
    ticket = await daemon.ticket(token)
    assert hash_token(token) in ticket and token not in ticket
    async with daemon.http.ws_connect(f"{daemon.url}/ws?ticket={ticket}") as ws:
        assert (await ws.receive_json())["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as again:  # once only
            await daemon.http.ws_connect(f"{daemon.url}/ws?ticket={ticket}")
        assert again.value.status == 401
        forged = ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB")
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
            await daemon.http.ws_connect(f"{daemon.url}/ws?ticket={forged}")
        assert bad.value.status == 401
        unused = await daemon.ticket(token)
        assert (await daemon.post("/api/logout", token)).status == 200
        assert await close_code(ws, within=2) == SESSION_ENDED_CODE  # ends with its login
    with pytest.raises(aiohttp.WSServerHandshakeError) as ended:  # a ticket of a logout
        await daemon.http.ws_connect(f"{daemon.url}/ws?ticket={unused}")
    assert ended.value.status == 401


async def test_api_tokens_are_refused_in_urls_signed_media_urls_work(start: Start) -> None:
    daemon = await start()
    await daemon.agent("lea", "310")
    token = await daemon.token("lea")
    path = "/api/emails/424242/attachments/0"
    assert (await daemon.http.get(f"{daemon.url}{path}?token={token}")).status == 401
    resp = await daemon.post("/api/media-urls", token, {"paths": [path, "/api/calls/7/recording"]})
    assert resp.status == 200
    body = await resp.json()
    signed = body["urls"][0]
    assert body["expires_in"] == 900 and token not in signed and signed.startswith(f"{path}?")
    # the signature authenticates (the e-mail does not exist: 404, not 401)
    assert (await daemon.http.get(f"{daemon.url}{signed}")).status == 404
    other = signed.replace("/attachments/0", "/attachments/1")  # another path
    altered = signed.replace("agent=", "agent=1")  # another agent
    expired = signed.replace("exp=", "exp=1")  # a later expiry (a longer number)
    for url in (other, altered, expired, f"{path}?exp=1&agent=1&sig=x"):
        assert (await daemon.http.get(f"{daemon.url}{url}")).status == 401, url
    for bad in (["/api/me"], ["/api/calls/1/recording?x=1"], ["x"] * 201):
        resp = await daemon.post("/api/media-urls", token, {"paths": bad})
        assert resp.status == 422, bad
    assert (daemon.svc.settings.general.data_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600


# --- the token re-check is one query per interval ----------------------------------------


async def test_open_websockets_recheck_their_tokens_in_one_query(start: Start) -> None:
    """40 websockets of 8 logins, re-checked every 0.2 s: about one query per interval
    for all of them (before: one per socket per interval, 40 here)."""
    daemon = await start(session_recheck_seconds=0.2)
    await daemon.agent("max", "311")
    tokens = [await daemon.token("max") for _ in range(8)]
    watch = daemon.app[TOKEN_WATCH]
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for i in range(40):
            headers = {"Authorization": f"Bearer {tokens[i % 8]}"}
            ws = await stack.enter_async_context(
                daemon.http.ws_connect(f"{daemon.url}/ws", headers=headers)
            )
            assert (await ws.receive_json())["type"] == "hello"
            sockets.append(ws)
        before, started = watch.lookups, time.perf_counter()
        await wait_until(lambda: watch.lookups >= before + 5, what="5 re-checks")
        intervals = (time.perf_counter() - started) / 0.2
        assert watch.lookups - before <= intervals + 2, (watch.lookups - before, intervals)
        async with daemon.svc.sessions.begin() as session:  # a logout in another process
            await session.delete(await session.get(ApiToken, hash_token(tokens[0])))
        assert await close_code(sockets[0], within=2) == SESSION_ENDED_CODE
        await sockets[1].send_json({"type": "ping"})  # another login's socket stays
        assert (await sockets[1].receive_json(timeout=2))["type"] == "pong"


# --- per address, and trickled bodies ---------------------------------------------------


async def idle_connection(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def healthy(daemon: Daemon) -> bool:
    try:
        async with daemon.http.get(f"{daemon.url}/healthz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_connections_per_address_are_capped(start: Start) -> None:
    daemon = await start(max_connections_per_address=8)
    idle = [await idle_connection(daemon.url) for _ in range(8)]
    try:
        reader, writer = await idle_connection(daemon.url)
        idle.append((reader, writer))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed as it opened
        for _, writer in idle[:2]:
            writer.close()
        await wait_until(lambda: healthy(daemon), 5, "room again once they are gone")
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_trickled_body_is_cut_off(start: Start) -> None:
    daemon = await start(body_timeout_seconds=0.5)
    reader, writer = await idle_connection(daemon.url)
    head = b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    writer.write(head + b"Content-Length: 1000\r\n\r\n{")
    started = time.perf_counter()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing():
                writer.write(b" ")  # a byte every 50 ms: the connection is never idle
                await writer.drain()
                await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert 0.4 < time.perf_counter() - started < 3
        assert await timed_healthz(daemon) < 0.5
    finally:
        trickling.cancel()
        writer.close()
        with contextlib.suppress(asyncio.CancelledError):
            await trickling
