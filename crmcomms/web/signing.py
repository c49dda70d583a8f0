"""Keeping login tokens out of URLs: signed media URLs and one-time websocket tickets.

A browser cannot put an ``Authorization`` header on an ``<audio src>``, a download
link or a websocket, and a token in a URL ends up in the browser's history and in
proxy logs. Instead, with the token in a header, the page asks for:

- **a signed media URL** (``POST /api/media-urls``): the path of a recording or an
  attachment plus ``exp`` (Unix time), ``agent`` (the agent's id) and ``sig``, an
  HMAC-SHA256 over all three. It is good for :data:`MEDIA_TTL` seconds, for that
  path only, and it authenticates as that agent, who must still be allowed to log
  in; the route's own rules then apply as for a bearer token.
- **a websocket ticket** (``POST /api/ws-ticket``), opened with ``/ws?ticket=``:
  good for :data:`TICKET_TTL` seconds and once (per process), and it stands for
  the token it was made from (its stored hash, never the token itself), so the
  websocket still ends when that login does.

The key is ``http.signing_key`` (or ``_file``, or ``CRMCOMMS_HTTP_SIGNING_KEY``);
without it, 32 random bytes kept in ``signing.key`` in the data dir (0600), made on
first start. Several daemons behind one proxy need the same key: the same data dir
or the same configured key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.agents import AgentIdentity, hash_token, identify_agent, identify_hashed
from core.errors import AuthError, InvalidInput
from crmcomms.config import Settings
from crmcomms.services import SERVICES, Services
from crmcomms.web.http import (
    IDENTITY,
    SIGNED_AUTH,
    TOKEN,
    SignedAuthenticator,
    json_response,
    read_model,
)

MEDIA_TTL = 15 * 60
"""Seconds a signed media URL is good for (a recording played, a file downloaded)."""
TICKET_TTL = 30
"""Seconds a websocket ticket is good for (it is used at once)."""
KEY_FILE = "signing.key"

MEDIA_PATHS = re.compile(
    r"/api/calls/[0-9]{1,19}/recording|/api/emails/[0-9]{1,19}/attachments/[0-9]{1,6}"
)
"""The paths a media URL may be signed for (the ones a browser loads by itself)."""


def signing_key(settings: Settings) -> bytes:
    """The configured key, or the data dir's key file (made 0600 when missing)."""
    configured = settings.http.signing_key.get_secret_value()
    if configured:
        return configured.encode("utf-8")
    return _key_file(settings.general.data_dir / KEY_FILE)


def _key_file(path: Path) -> bytes:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as file:
        key = secrets.token_bytes(32)
        file.write(key)
    return key


@dataclass(frozen=True, slots=True)
class MediaGrant:
    """A valid signed media URL: who it authenticates."""

    agent_id: int


class UrlSigner:
    """Makes and checks signed media URLs and websocket tickets (see the module docstring)."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._key, self._clock = key, clock
        self._used: dict[str, float] = {}  # ticket nonce -> expiry, until it expires
        self._pruned_at = 0.0

    def _mac(self, *parts: str) -> str:
        digest = hmac.new(self._key, "\n".join(parts).encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def sign_media(self, path: str, agent_id: int) -> str:
        """``path`` with the query that lets ``agent_id`` load it for :data:`MEDIA_TTL` s."""
        expires = int(self._clock()) + MEDIA_TTL
        sig = self._mac("media", path, str(expires), str(agent_id))
        return f"{path}?exp={expires}&agent={agent_id}&sig={sig}"

    def check_media(self, path: str, exp: str, agent: str, sig: str) -> MediaGrant | None:
        """The grant of a signed URL for ``path``; None when forged, altered or expired."""
        if not (_digits(exp) and _digits(agent)) or int(exp) < self._clock():
            return None
        if not hmac.compare_digest(sig, self._mac("media", path, exp, agent)):
            return None
        return MediaGrant(int(agent))

    def ticket(self, token_hash: str) -> str:
        """A one-time websocket ticket standing for the token stored as ``token_hash``."""
        expires, nonce = int(self._clock()) + TICKET_TTL, secrets.token_urlsafe(12)
        sig = self._mac("ws", token_hash, str(expires), nonce)
        return f"{token_hash}.{expires}.{nonce}.{sig}"

    def redeem(self, ticket: str) -> str | None:
        """The token hash a ticket stands for, once; None when forged, expired or used."""
        parts = ticket.split(".")
        if len(parts) != 4 or len(ticket) > 300:
            return None
        token_hash, exp, nonce, sig = parts
        now = self._clock()
        if not _digits(exp) or int(exp) < now or nonce in self._used:
            return None
        if not hmac.compare_digest(sig, self._mac("ws", token_hash, exp, nonce)):
            return None
        self._forget_expired(now)
        self._used[nonce] = float(exp)
        return token_hash

    def _forget_expired(self, now: float) -> None:
        if now - self._pruned_at > TICKET_TTL:
            self._used = {n: exp for n, exp in self._used.items() if exp >= now}
            self._pruned_at = now


def _digits(raw: str) -> bool:
    return 0 < len(raw) <= 19 and raw.isascii() and raw.isdigit()


#: Redeems a websocket ticket: the identity and the stored hash of the token it stands
#: for, or None (forged, expired, used, or that login has ended).
TicketRedeemer = Callable[[str], Awaitable[tuple[AgentIdentity, str] | None]]

SIGNER: web.AppKey[UrlSigner] = web.AppKey("url_signer", UrlSigner)
WS_TICKETS: web.AppKey[TicketRedeemer] = web.AppKey("ws_tickets")
MAX_PATHS = 200


class MediaUrlsInput(BaseModel):
    """Body of ``POST /api/media-urls``: the paths to sign."""

    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(max_length=MAX_PATHS)


async def post_media_urls(request: web.Request) -> web.Response:
    """Signed URLs for the caller, one per path (recordings and attachments only)."""
    body = await read_model(request, MediaUrlsInput)
    for index, path in enumerate(body.paths):
        if not MEDIA_PATHS.fullmatch(path):
            raise InvalidInput(f"paths.{index}", "not a recording or attachment path")
    signer, agent_id = request.app[SIGNER], request[IDENTITY].id
    urls = [signer.sign_media(path, agent_id) for path in body.paths]
    return json_response({"urls": urls, "expires_in": MEDIA_TTL})


async def post_ws_ticket(request: web.Request) -> web.Response:
    """A one-time ticket to open ``/ws?ticket=`` with (the token stays in the header)."""
    token = request.get(TOKEN)
    if token is None:
        raise AuthError("missing bearer token")
    ticket = request.app[SIGNER].ticket(hash_token(token))
    return json_response({"ticket": ticket, "expires_in": TICKET_TTL})


def signed_identity(svc: Services, signer: UrlSigner) -> SignedAuthenticator:
    """The :data:`~crmcomms.web.http.SIGNED_AUTH` hook: the agent a signed media URL
    names (None without ``sig``); AuthError when it is forged, altered or expired."""

    async def identity(request: web.Request) -> AgentIdentity | None:
        query = request.query
        if "sig" not in query:
            return None
        path = request.path
        grant = signer.check_media(path, query.get("exp", ""), query.get("agent", ""), query["sig"])
        if grant is None or not MEDIA_PATHS.fullmatch(path):
            raise AuthError("invalid or expired signed URL")
        async with svc.sessions() as session:
            return await identify_agent(session, grant.agent_id)

    return identity


def ticket_redeemer(svc: Services, signer: UrlSigner) -> TicketRedeemer:
    """The redeemer of the websocket tickets ``signer`` made."""

    async def redeem(ticket: str) -> tuple[AgentIdentity, str] | None:
        token_hash = signer.redeem(ticket)
        if token_hash is None:
            return None
        try:
            async with svc.sessions() as session:
                return await identify_hashed(session, token_hash), token_hash
        except AuthError:
            return None

    return redeem


def add_routes(app: web.Application) -> None:
    """The signer (key from the settings or the data dir), its routes and hooks."""
    svc = app[SERVICES]
    signer = app[SIGNER] = UrlSigner(signing_key(svc.settings))
    app[SIGNED_AUTH] = signed_identity(svc, signer)
    app[WS_TICKETS] = ticket_redeemer(svc, signer)
    app.router.add_post("/api/media-urls", post_media_urls)
    app.router.add_post("/api/ws-ticket", post_ws_ticket)
