"""The listening socket's defence against slow and numerous clients (slowloris).

- A connection must send a whole request head within ``header_timeout_seconds``
  of connecting, or of its previous answer (aiohttp's keep-alive timer, which
  starts at the connection and is not pushed back by a partial head), or it is
  closed.
- A request's body must have arrived ``body_timeout_seconds`` after its head, or
  the connection is closed (the handler reading it gets :class:`BodyTimeoutError`,
  answered 408 if the client still listens): a body trickled a byte at a time
  cannot hold a handler and a connection for ever.
- At most ``max_connections`` connections are open (never more than the
  process's file limit allows, less a reserve for the database, the PBX link,
  mailboxes and logs). When full, the oldest connection that has not sent a
  request yet is closed to make room: half-sent heads cannot keep out a client
  that sends a whole request at once, such as a browser or the health probe.
- At most ``max_connections_per_address`` of them from one peer address; more are
  closed as they open, so one client cannot take every place. The trusted proxies
  (``http.trusted_proxies``) are exempt: every agent comes through them, and the
  address they forward is not known before a request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from crmcomms.config import HttpSettings
from crmcomms.web.http import BodyTimeoutError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Files kept free for everything that is not a client connection.
FILE_RESERVE = 128


def runner_options(http: HttpSettings) -> dict[str, Any]:
    """Keyword arguments of the ``AppRunner`` (or ``TestServer``) serving the app."""
    return {"keepalive_timeout": http.header_timeout_seconds}


def connection_limit(configured: int) -> int:
    """``configured``, lowered to fit the process's open-file limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    fits = max(soft - FILE_RESERVE, 16)
    if fits < configured:
        log.warning("max_connections %d lowered to %d to fit LimitNOFILE", configured, fits)
    return min(configured, fits)


class ConnectionCap:
    """A protocol factory around aiohttp's ``web.Server`` keeping the connection caps
    (in all and per address) and the body timeout."""

    def __init__(
        self,
        server: web.Server,
        limit: int,
        per_address: int = 0,
        body_timeout: float = 0.0,
        proxies: Sequence[Network] = (),
    ) -> None:
        self._server, self._limit = server, limit
        self._waiting: dict[RequestHandler, None] = {}  # no request yet, oldest first
        self._addresses = _AddressCap(server, per_address, proxies) if per_address else None
        inner = server.request_handler

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            self._waiting.pop(request.protocol, None)
            if not body_timeout or request.content.is_eof():
                return await inner(request)
            loop = asyncio.get_running_loop()
            timer = loop.call_later(body_timeout, _cut_slow_body, request, body_timeout)
            try:
                return await inner(request)
            finally:
                timer.cancel()

        server.request_handler = handle

    def __call__(self) -> RequestHandler:
        if len(self._server.connections) >= self._limit:
            self._make_room()
        if len(self._waiting) > 2 * self._limit:
            self._forget_closed()
        handler = self._server()
        self._waiting[handler] = None
        return handler

    def _make_room(self) -> None:
        """Close the oldest connection still without a request."""
        while self._waiting:
            handler = next(iter(self._waiting))
            del self._waiting[handler]
            if handler.transport is not None:
                log.info("connection limit %d reached: closing an idle connection", self._limit)
                handler.force_close()
                return
        log.warning("connection limit %d reached, every connection busy", self._limit)

    def _forget_closed(self) -> None:
        self._waiting = {h: None for h in self._waiting if h.transport is not None}


def _cut_slow_body(request: web.BaseRequest, seconds: float) -> None:
    """The body has not arrived in time: fail its reader and close the connection."""
    if request.content.is_eof():
        return
    log.info("request body from %s not received within %.0f s: closed", request.remote, seconds)
    request.content.set_exception(BodyTimeoutError(f"request body not received in {seconds} s"))
    request.protocol.force_close()


class _AddressCap:
    """Closes connections beyond ``limit`` from one peer address, as they open.

    It hooks the ``web.Server``'s ``connection_made``/``connection_lost``, which every
    connection's protocol calls with its transport (whose peer is known by then).
    """

    def __init__(self, server: web.Server, limit: int, proxies: Sequence[Network]) -> None:
        self._limit, self._proxies = limit, proxies
        self._open: Counter[str] = Counter()
        self._address: dict[RequestHandler, str] = {}
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._admit(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._release(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def _admit(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._is_proxy(address):
            return
        if self._open[address] >= self._limit:
            if self._open[address] == self._limit:
                log.warning("%s has %d connections open, the most allowed", address, self._limit)
            # closed on the next turn of the loop: aiohttp starts the handler's task
            # after this hook and asserts the connection is still open when it runs
            asyncio.get_running_loop().call_soon(transport.close)
            return
        self._open[address] += 1
        self._address[handler] = address

    def _is_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)

    def _release(self, handler: RequestHandler) -> None:
        address = self._address.pop(handler, None)
        if address is None:
            return
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections go through a :class:`ConnectionCap`."""

    __slots__ = ("_body_timeout", "_limit", "_per_address", "_proxies")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        max_connections: int,
        per_address: int = 0,
        body_timeout: float = 0.0,
        proxies: Sequence[Network] = (),
    ) -> None:
        super().__init__(runner, host, port, backlog=1024)
        self._limit = connection_limit(max_connections)
        self._per_address, self._body_timeout = per_address, body_timeout
        self._proxies = tuple(proxies)

    @classmethod
    def of(cls, runner: web.BaseRunner, http: HttpSettings) -> GuardedSite:
        """The site ``[http]`` describes."""
        return cls(
            runner,
            http.host,
            http.port,
            http.max_connections,
            http.max_connections_per_address,
            http.body_timeout_seconds,
            http.trusted_proxies,
        )

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            ConnectionCap(
                server, self._limit, self._per_address, self._body_timeout, self._proxies
            ),
            self._host,
            self._port,
            backlog=self._backlog,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
