"""The listening socket's defence against slow and numerous clients (slowloris).

- A connection must send a whole request head within ``header_timeout_seconds``
  of connecting, or of its previous answer (aiohttp's keep-alive timer, which
  starts at the connection and is not pushed back by a partial head), or it is
  closed.
- At most ``max_connections`` connections are open (never more than the
  process's file limit allows, less a reserve for the database, the PBX link,
  mailboxes and logs). When full, the oldest connection that has not sent a
  request yet is closed to make room: half-sent heads cannot keep out a client
  that sends a whole request at once, such as a browser or the health probe.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from crmcomms.config import HttpSettings

log = logging.getLogger(__name__)

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
    """A protocol factory around aiohttp's ``web.Server`` keeping the connection cap."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server, self._limit = server, limit
        self._waiting: dict[RequestHandler, None] = {}  # no request yet, oldest first
        inner = server.request_handler

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            self._waiting.pop(request.protocol, None)
            return await inner(request)

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


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections go through a :class:`ConnectionCap`."""

    __slots__ = ("_limit",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, max_connections: int) -> None:
        super().__init__(runner, host, port, backlog=1024)
        self._limit = connection_limit(max_connections)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            ConnectionCap(server, self._limit), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
