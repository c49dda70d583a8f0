"""The outermost middleware: the real client address, request metrics and the access log.

Behind a reverse proxy every request comes from the proxy. For a peer listed in
``http.trusted_proxies`` the client is taken from ``X-Forwarded-For``: the
right-most address that is not itself a trusted proxy (the left part of the
header is whatever the client sent and cannot be believed). Handlers then see
it as ``request.remote`` (the login throttle, the logs).

Every request is counted and timed per route *template* (``/api/calls/{call_id}``,
never the id itself, which would make a series per call) in
``crmcomms_http_requests_total`` and ``crmcomms_http_request_duration_seconds``,
and logged at DEBUG on ``crmcomms.access`` (path without the query string, which
may carry a token). Websockets are counted, not timed.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from crmcomms.metrics import Metrics
from crmcomms.web.http import Handler

log = logging.getLogger("crmcomms.access")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(peer: str | None, forwarded_for: str, trusted: Sequence[Network]) -> str | None:
    """The client's address: ``peer``, or for a trusted peer the last untrusted hop it names."""
    if peer is None or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_address(hop) else peer
    return hops[0] if hops and _is_address(hops[0]) else peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def route_template(request: web.Request) -> str:
    """The route the request matched, as registered (``unmatched`` for a 404)."""
    if request.match_info.http_exception is not None:
        return "unmatched"
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def access_middleware(metrics: Metrics, trusted: Sequence[Network]) -> Callable[..., Any]:
    """The middleware; put it first so that it sees every answer, errors included."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        remote = client_address(request.remote, request.headers.get("X-Forwarded-For", ""), trusted)
        if remote is not None and remote != request.remote:
            request = request.clone(remote=remote)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            _observe(metrics, request, status, time.perf_counter() - started)

    return middleware


def _observe(metrics: Metrics, request: web.Request, status: int, seconds: float) -> None:
    route = route_template(request)
    metrics.http_requests.labels(request.method, route, str(status)).inc()
    if status != 101:
        metrics.http_latency.labels(request.method, route).observe(seconds)
    log.debug(
        "%s %s %s %d %.1fms",
        request.remote,
        request.method,
        request.path,
        status,
        seconds * 1000,
        extra={"client": request.remote, "route": route, "status": status},
    )
