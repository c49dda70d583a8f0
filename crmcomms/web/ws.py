"""``GET /ws``: the live event stream of one agent's browser.

Protocol (server to client, JSON text frames): first
``{"type": "hello", "seq": current, "epoch": ...}``; then, when the client gave
``?since=<seq>[&epoch=<epoch>]``, either the events it missed, in order, or
``{"type": "reload", "seq": current}``; then live events. A client may send
``{"type": "ping"}`` and gets ``{"type": "pong"}``; anything else is ignored.

A browser, which cannot set headers on a websocket, first gets a one-time ticket
(``POST /api/ws-ticket`` with its token in the header) and opens ``/ws?ticket=``;
other clients may send ``Authorization: Bearer``. ``?token=`` is still accepted
but deprecated (logged): the token would end up in proxy logs and the browser's
history. A client too slow for its queue is closed
with code 4000 and reconnects with ``since``; one whose login ends (logout,
token expiry) with 4401 and must log in again; on shutdown (``hub.close()``,
wired through :func:`shutdown_hook`) clients get 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler

from core.agents import hash_token
from crmcomms.push import EndReason, HubClosedError, Identity, PushHub, Subscription
from crmcomms.web.http import ascii_digits

log = logging.getLogger(__name__)

Authenticate = Callable[[str], Awaitable[Identity | None]]
#: A ticket's identity and the stored hash of the token it stands for (None: refused).
Redeem = Callable[[str], Awaitable[tuple[Identity, str] | None]]
#: Waits (briefly) until this process delivered the given seq (several processes).
CatchUp = Callable[[int], Awaitable[bool]]
#: Returns when the token a websocket was opened with (given by its stored hash,
#: :func:`core.agents.hash_token`) is no longer good (logout, expiry).
SessionEnd = Callable[[str], Awaitable[None]]

TOO_SLOW_CODE = 4000
TOO_SLOW_REASON = b"too slow, reconnect with since"
SESSION_ENDED_CODE = 4401  # "401": log in again
SESSION_ENDED_REASON = b"logged out or token expired"
_PONG = orjson.dumps({"type": "pong"})
_BACKLOG_SLICE = 200  # frames sent in a row before yielding while replaying a backlog


@dataclass(frozen=True, slots=True)
class _Cursor:
    since: int | None
    epoch: str | None


class _BadRequestError(Exception):
    """A query parameter is malformed; the message is shown to the client."""


@dataclass(frozen=True, slots=True)
class _Login:
    identity: Identity
    token_hash: str


def websocket_handler(
    hub: PushHub,
    authenticate: Authenticate,
    heartbeat: float = 20.0,
    close_timeout: float = 5.0,
    session_end: SessionEnd | None = None,
    catch_up: CatchUp | None = None,
    tickets: Redeem | None = None,
) -> Handler:
    """Build the ``GET /ws`` handler serving ``hub`` to authenticated agents (a token
    checked by ``authenticate``, or a ticket redeemed by ``tickets``); with
    ``session_end``, a websocket is closed (4401) when its token stops being good; with
    ``catch_up`` (the PostgreSQL bus), a client coming from another process with a
    ``since`` this one has not delivered yet waits for it instead of reloading."""

    warned = False

    async def login(request: web.Request) -> _Login | None:
        nonlocal warned
        ticket = request.query.get("ticket")
        if ticket and tickets is not None:
            redeemed = await tickets(ticket)
            return None if redeemed is None else _Login(*redeemed)
        token = _token(request)
        if token is not None and "token" in request.query and not warned:
            warned = True  # once per process: old clients reconnect often
            log.warning("deprecated /ws?token= (from %s): use POST /api/ws-ticket", request.remote)
        identity = await authenticate(token) if token else None
        return None if identity is None or token is None else _Login(identity, hash_token(token))

    async def handle(request: web.Request) -> web.StreamResponse:
        who = await login(request)
        if who is None:
            return _error(401, "missing or invalid ticket or token", {"WWW-Authenticate": "Bearer"})
        identity = who.identity
        try:
            cursor = _cursor(request)
        except _BadRequestError as exc:
            return _error(400, str(exc))
        ws = web.WebSocketResponse(heartbeat=heartbeat, timeout=close_timeout, compress=False)
        if not ws.can_prepare(request).ok:
            return _error(400, "websocket upgrade expected")
        if catch_up is not None and cursor.since is not None and cursor.since > hub.current_seq:
            await catch_up(cursor.since)  # seen on another process a moment ago
        try:
            subscription = hub.subscribe(identity, cursor.since, cursor.epoch)
        except HubClosedError as exc:
            return _error(503, str(exc))
        try:
            try:
                await ws.prepare(request)
            except ConnectionError:  # the browser left during the handshake: nothing to serve
                log.info("websocket of %s closed during the handshake", request.remote)
                return ws
            ended = session_end(who.token_hash) if session_end is not None else None
            if await _serve(ws, subscription, ended):
                await _close_session_ended(ws, close_timeout)
            else:
                await _close(ws, subscription.end_reason, close_timeout)
        finally:
            hub.unsubscribe(subscription)
        return ws

    return handle


def shutdown_hook(hub: PushHub) -> Callable[[web.Application], Awaitable[None]]:
    """An ``app.on_shutdown`` callback ending every websocket session cleanly.

    It must run in ``on_shutdown`` (before aiohttp waits for handlers), not in
    ``cleanup_ctx`` (after).
    """

    async def on_shutdown(app: web.Application) -> None:
        hub.close()

    return on_shutdown


def _token(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query.get("token") or None


def _cursor(request: web.Request) -> _Cursor:
    raw_since = request.query.get("since")
    epoch = request.query.get("epoch") or None
    if raw_since is None or raw_since == "":
        return _Cursor(since=None, epoch=epoch)
    if not ascii_digits(raw_since) or len(raw_since) > 19:
        raise _BadRequestError("since must be a non-negative integer")
    return _Cursor(since=int(raw_since), epoch=epoch)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _serve(
    ws: web.WebSocketResponse,
    subscription: Subscription,
    session_end: Awaitable[None] | None = None,
) -> bool:
    """Run until the client goes away, the pump fails, the hub ends us or the session
    ends; True in the last case."""
    tasks = {
        asyncio.create_task(_read_client(ws), name="ws-read"),
        asyncio.create_task(_pump(ws, subscription), name="ws-pump"),
        asyncio.create_task(subscription.wait_ended(), name="ws-ended"),
    }
    watch = asyncio.ensure_future(session_end if session_end is not None else asyncio.Future())
    tasks.add(watch)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.result()  # re-raise an unexpected failure of the reader or the pump
    return not watch.cancelled()


async def _read_client(ws: web.WebSocketResponse) -> None:
    """Answer ``ping`` messages; return when the socket closes or errs.

    Reading also processes close frames and the heartbeat's pongs.
    """
    async for message in ws:
        if message.type is WSMsgType.TEXT and _is_ping(message.data):
            with contextlib.suppress(ConnectionError):
                await ws.send_frame(_PONG, WSMsgType.TEXT)
        elif message.type is WSMsgType.ERROR:
            log.info("websocket error: %s", ws.exception())
            return


def _is_ping(text: str) -> bool:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("type") == "ping"


async def _pump(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    """Send greeting and backlog, then live frames; return if the peer is gone."""
    try:
        for count, frame in enumerate(subscription.initial_frames(), start=1):
            await ws.send_frame(frame, WSMsgType.TEXT)
            if count % _BACKLOG_SLICE == 0:
                await asyncio.sleep(0)  # let other clients and the event path run
        while True:
            frame = await subscription.next_frame()
            await ws.send_frame(frame, WSMsgType.TEXT)
    except ConnectionError:
        return


def _close_frame(reason: EndReason | None) -> tuple[int, bytes]:
    """The close code and message telling the client why it was ended."""
    if reason is EndReason.OVERFLOW:
        return TOO_SLOW_CODE, TOO_SLOW_REASON
    if reason is EndReason.SHUTDOWN:
        return int(WSCloseCode.GOING_AWAY), b"server shutting down"
    return int(WSCloseCode.OK), b""


async def _close_session_ended(ws: web.WebSocketResponse, grace: float) -> None:
    """Close because the login ended: the client must log in again, not reconnect."""
    await _close_with(ws, SESSION_ENDED_CODE, SESSION_ENDED_REASON, grace)


async def _close(ws: web.WebSocketResponse, reason: EndReason | None, grace: float) -> None:
    """Close, telling the client why."""
    code, message = _close_frame(reason)
    await _close_with(ws, code, message, grace)


async def _close_with(ws: web.WebSocketResponse, code: int, message: bytes, grace: float) -> None:
    """Close with ``code``; a peer that does not answer is cut after ``grace``."""
    try:
        async with asyncio.timeout(grace):
            await ws.close(code=code, message=message, drain=False)
    except TimeoutError:
        log.info("websocket peer did not complete the close handshake; connection cut")
