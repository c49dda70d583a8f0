"""HTTP plumbing shared by all handlers: JSON in/out, error mapping, bearer-token auth.

Errors are translated once here: core's ``NotFound`` -> 404, ``InvalidInput`` ->
422, ``AuthError`` -> 401, ``Conflict`` -> 409, a malformed body -> 400, a body
that did not arrive in time -> 408. Anything else is logged with its traceback and
answered 500 without details.

A login token is accepted in the ``Authorization: Bearer`` header only, never in
a URL; what a browser loads by itself (recordings, attachments) comes with a
signed URL instead (:mod:`crmcomms.web.signing`), checked by the hook under
:data:`SIGNED_AUTH`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web, web_response
from aiohttp.abc import AbstractAccessLogger
from pydantic import BaseModel, ValidationError

from core.agents import AgentIdentity
from core.errors import AuthError, Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Authenticator = Callable[[str], Awaitable[AgentIdentity]]
#: Who a signed URL authenticates (None: the request carries no signature).
SignedAuthenticator = Callable[[web.Request], Awaitable[AgentIdentity | None]]

IDENTITY: web.RequestKey[AgentIdentity] = web.RequestKey("identity", AgentIdentity)
TOKEN: web.RequestKey[str] = web.RequestKey("token", str)
PUBLIC_API = frozenset({"/api/login"})
SIGNED_AUTH: web.AppKey[SignedAuthenticator] = web.AppKey("signed_auth")


class BodyTimeoutError(Exception):
    """The request body did not arrive in time (``http.body_timeout_seconds``)."""


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response encoded with orjson (datetimes as ISO 8601)."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    """The one error shape: ``{"error": message, "status": status}``."""
    return json_response({"error": message, "status": status}, status=status)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 400 if it is not JSON."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(reason="body is not valid JSON") from exc


async def read_model(request: web.Request, model: type[M]) -> M:
    """The request body validated into ``model``; 422 naming the field otherwise."""
    body = await read_json(request)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(field, first["msg"]) from exc


#: The largest id a database row can have (a signed 64-bit integer).
MAX_ID = 2**63 - 1


def ascii_digits(raw: str) -> bool:
    """Only ``0``-``9`` (``str.isdigit`` also passes ``²`` and ``１``, which ``int`` refuses)."""
    return raw != "" and raw.isascii() and raw.isdigit()


def parse_id(raw: str | None, name: str) -> int:
    """``raw`` as a row id (ASCII digits, at most :data:`MAX_ID`); 422 naming ``name``."""
    if raw is None or not ascii_digits(raw) or len(raw.lstrip("0")) > 19 or int(raw) > MAX_ID:
        raise InvalidInput(name, f"must be a whole number from 0 to {MAX_ID}")
    return int(raw)


def path_id(request: web.Request, key: str) -> int:
    """The id in the URL's ``{key}`` (see :func:`parse_id`)."""
    return parse_id(request.match_info[key], key)


def optional_id(request: web.Request, name: str) -> int | None:
    """The id in the query parameter ``name``, None when absent or empty."""
    raw = request.query.get(name)
    return None if raw is None or raw == "" else parse_id(raw, name)


def int_param(request: web.Request, name: str, default: int, maximum: int = 1000) -> int:
    """A non-negative integer query parameter (ASCII digits), at most ``maximum``."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not ascii_digits(raw):
        raise InvalidInput(name, "must be a non-negative integer")
    return maximum if len(raw.lstrip("0")) > 19 else min(int(raw), maximum)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate errors into JSON responses; never send a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except NotFound as exc:
        return error_response(404, str(exc))
    except InvalidInput as exc:
        return error_response(422, str(exc))
    except AuthError as exc:
        return error_response(401, str(exc))
    except Conflict as exc:
        return error_response(409, str(exc))
    except BodyTimeoutError as exc:
        return error_response(408, str(exc))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error")


def bearer_token(request: web.Request) -> str | None:
    """The token from ``Authorization: Bearer`` (never from the URL)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def auth_middleware(authenticate: Authenticator) -> Callable[..., Any]:
    """Require a valid token (or a signed URL) on /api/ except login."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/") or request.path in PUBLIC_API:
            return await handler(request)
        token = bearer_token(request)
        if token is not None:
            request[IDENTITY] = await authenticate(token)
            request[TOKEN] = token
        elif (identity := await _signed_identity(request)) is not None:
            request[IDENTITY] = identity
        else:
            raise AuthError("missing bearer token")
        return await handler(request)

    return middleware


async def _signed_identity(request: web.Request) -> AgentIdentity | None:
    signed = request.app.get(SIGNED_AUTH)
    return None if signed is None else await signed(request)


def require_role(request: web.Request, *roles: str) -> AgentIdentity:
    """The caller's identity if it has one of ``roles``; 403 otherwise."""
    identity = request[IDENTITY]
    if identity.role not in roles:
        raise web.HTTPForbidden(reason=f"needs role {' or '.join(roles)}")
    return identity


PAGE_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-src 'self' about:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
"""The Content-Security-Policy of every response: the agent page's own ``<meta>`` policy
(same-origin scripts only) plus what a ``<meta>`` cannot say: never framed."""

SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
SERVER_NAME = "crmcomms"


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: security headers on every response of the app (pages,
    API, files, errors, the websocket handshake) and a ``Server:`` without versions."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = SERVER_NAME


def hide_server_version() -> None:
    """No versions in the ``Server:`` of aiohttp's own answers either.

    A request the HTTP parser refuses (400) is answered by aiohttp before any
    application hook runs, with the default ``Python/3.x aiohttp/3.x``; aiohttp
    offers no setting for it, so its default is replaced (idempotent).
    """
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]


class AccessLogger(AbstractAccessLogger):
    """One line per request, path without the query string (it may carry a token)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )
