"""Login, logout and "who am I"; who may call which route (the one permission table).

Every route of the application has a rule in :data:`PERMISSIONS`, keyed by method
and route pattern; :func:`permission_middleware` enforces it for every request
(a route without a rule answers 403, and a test walks the router so that a new
route without a rule fails). Finer rules that depend on the row (an agent sees
the calls they were part of, the e-mails the push would have sent them, the
tasks assigned to them) live in the handlers and are named in the rule's note.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.agents import login_pooled, logout
from core.errors import AuthError
from crmcomms.services import SERVICES, services
from crmcomms.web import signing
from crmcomms.web.http import (
    IDENTITY,
    TOKEN,
    Handler,
    error_response,
    json_response,
    read_model,
    require_role,
)
from crmcomms.web.throttle import LoginThrottle, TooManyFailures
from crmcomms.web.tokens import TokenWatch

log = logging.getLogger(__name__)

AGENT, SUPERVISOR, ADMIN = "agent", "supervisor", "admin"
EVERY_ROLE = (AGENT, SUPERVISOR, ADMIN)
STAFF = (SUPERVISOR, ADMIN)


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may call a route: ``roles`` (empty: no login needed) and what limits an agent."""

    roles: tuple[str, ...]
    agents_limited_to: str = ""


PUBLIC = Rule(())

#: The permission table (also in README, "HTTP API"): (method, route pattern) -> rule.
PERMISSIONS: Mapping[tuple[str, str], Rule] = {
    ("POST", "/api/login"): PUBLIC,
    ("POST", "/api/logout"): Rule(EVERY_ROLE),
    ("GET", "/api/me"): Rule(EVERY_ROLE),
    # tokens out of URLs (crmcomms/web/signing.py): signed media URLs are checked again by
    # the route they open; a ticket stands for the caller's own token
    ("POST", "/api/media-urls"): Rule(EVERY_ROLE, "what the signed route lets them read"),
    ("POST", "/api/ws-ticket"): Rule(EVERY_ROLE),
    ("GET", "/api/lookup"): Rule(EVERY_ROLE),
    ("GET", "/api/contacts"): Rule(EVERY_ROLE),
    ("POST", "/api/contacts"): Rule(EVERY_ROLE),
    ("GET", "/api/contacts/{contact_id}"): Rule(EVERY_ROLE),
    ("PUT", "/api/contacts/{contact_id}"): Rule(STAFF),
    ("DELETE", "/api/contacts/{contact_id}"): Rule(STAFF),
    ("POST", "/api/contacts/import"): Rule(STAFF),
    ("POST", "/api/contacts/{contact_id}/notes"): Rule(EVERY_ROLE),
    ("GET", "/api/contacts/{contact_id}/history"): Rule(EVERY_ROLE, "calls they were part of"),
    ("GET", "/api/organizations/{organization_id}/history"): Rule(
        EVERY_ROLE, "calls they were part of"
    ),
    ("GET", "/api/calls"): Rule(EVERY_ROLE, "calls they were part of"),
    ("POST", "/api/calls"): Rule(EVERY_ROLE, "dialling from their own extension"),
    ("GET", "/api/calls/{call_id}"): Rule(EVERY_ROLE, "calls they were part of"),
    ("GET", "/api/calls/{call_id}/recording"): Rule(EVERY_ROLE, "calls they were part of"),
    # call controls: their own channel on a call in progress they are part of
    ("POST", "/api/calls/{call_id}/hangup"): Rule(EVERY_ROLE, "their own live calls"),
    ("POST", "/api/calls/{call_id}/hold"): Rule(EVERY_ROLE, "their own live calls"),
    ("POST", "/api/calls/{call_id}/resume"): Rule(EVERY_ROLE, "their own live calls"),
    ("POST", "/api/calls/{call_id}/transfer"): Rule(EVERY_ROLE, "their own live calls"),
    ("POST", "/api/calls/{call_id}/transfer/complete"): Rule(EVERY_ROLE, "their own live calls"),
    ("POST", "/api/calls/{call_id}/transfer/cancel"): Rule(EVERY_ROLE, "their own live calls"),
    ("GET", "/api/presence"): Rule(EVERY_ROLE, "their own extensions"),
    ("POST", "/api/presence"): Rule(EVERY_ROLE, "their own extensions"),
    ("GET", "/api/wall"): Rule(STAFF),
    # wrap-up (crmcomms/web/wrapup.py): the calls they were part of
    ("GET", "/api/wrapup"): Rule(EVERY_ROLE),
    ("PUT", "/api/calls/{call_id}/disposition"): Rule(EVERY_ROLE, "calls they were part of"),
    ("POST", "/api/calls/{call_id}/contact"): Rule(EVERY_ROLE, "calls they were part of"),
    ("PUT", "/api/contacts/{contact_id}/tags"): Rule(EVERY_ROLE),
    ("POST", "/api/contacts/{contact_id}/tasks"): Rule(EVERY_ROLE),
    ("POST", "/api/contacts/{contact_id}/merge"): Rule(STAFF),
    ("GET", "/api/tasks"): Rule(EVERY_ROLE, "tasks assigned to their extensions"),
    ("POST", "/api/tasks/{task_id}/done"): Rule(EVERY_ROLE, "tasks assigned to their extensions"),
    ("GET", "/api/emails"): Rule(EVERY_ROLE, "e-mails the push sends them"),
    ("POST", "/api/emails"): Rule(EVERY_ROLE),
    ("GET", "/api/mailboxes"): Rule(EVERY_ROLE),
    ("GET", "/api/emails/{email_id}"): Rule(EVERY_ROLE, "e-mails the push sends them"),
    ("GET", "/api/emails/{email_id}/attachments/{n}"): Rule(
        EVERY_ROLE, "e-mails the push sends them"
    ),
    # agent administration (crmcomms/web/admin.py; its handlers check the role too)
    ("GET", "/api/agents"): Rule((ADMIN,)),
    ("POST", "/api/agents"): Rule((ADMIN,)),
    ("GET", "/api/agents/{agent_id}"): Rule((ADMIN,)),
    ("PUT", "/api/agents/{agent_id}"): Rule((ADMIN,)),
    ("DELETE", "/api/agents/{agent_id}"): Rule((ADMIN,)),
    ("POST", "/api/agents/{agent_id}/password"): Rule((ADMIN,)),
    ("POST", "/api/agents/{agent_id}/disable"): Rule((ADMIN,)),
    ("POST", "/api/agents/{agent_id}/enable"): Rule((ADMIN,)),
    ("GET", "/api/contacts/imports"): Rule(STAFF),  # progress of running imports
    ("GET", "/admin"): PUBLIC,  # the page holds no data; its API calls need an admin
    # the websocket checks its ticket or token itself (browsers cannot send headers there)
    ("GET", "/ws"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/static"): PUBLIC,
}


def rule_of(request: web.Request) -> Rule | None:
    """The rule of the route ``request`` matched (HEAD follows GET), if there is one."""
    canonical = request.match_info.route.resource.canonical  # type: ignore[union-attr]
    method = "GET" if request.method == "HEAD" else request.method
    return PERMISSIONS.get((method, canonical))


@web.middleware
async def permission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Enforce :data:`PERMISSIONS` (after the auth middleware has identified the caller)."""
    if request.match_info.http_exception is not None:  # no route: let it answer 404/405
        return await handler(request)
    rule = rule_of(request)
    if rule is None:
        log.error("no permission rule for %s %s: refused", request.method, request.path)
        raise web.HTTPForbidden(reason="no permission rule for this route")
    if rule.roles:
        if IDENTITY not in request:
            raise AuthError("missing bearer token")
        require_role(request, *rule.roles)
    return await handler(request)


class LoginInput(BaseModel):
    """Body of POST /api/login."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=200)
    password: str = Field(max_length=1000)


LOGIN_THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("login_throttle", LoginThrottle)
TOKEN_WATCH: web.AppKey[TokenWatch] = web.AppKey("token_watch", TokenWatch)


async def post_login(request: web.Request) -> web.Response:
    body = await read_model(request, LoginInput)
    svc = services(request)
    throttle = request.app[LOGIN_THROTTLE]
    keys = throttle.keys(body.username, request.remote)
    try:
        throttle.attempt(keys)
    except TooManyFailures as exc:
        log.warning("login throttled for %r from %s", body.username[:100], request.remote)
        return _too_many(exc)
    try:
        token, identity = await login_pooled(
            svc.sessions, body.username, body.password, svc.token_ttl
        )
    except AuthError:
        log.warning("login refused for %r from %s", body.username[:100], request.remote)
        raise
    throttle.succeeded(keys)
    language = svc.settings.general.language
    return json_response({"token": token, "agent": {**identity.to_json(), "language": language}})


def _too_many(exc: TooManyFailures) -> web.Response:
    response = error_response(429, "too many failed logins, try again later")
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def post_logout(request: web.Request) -> web.Response:
    async with services(request).sessions.begin() as session:
        await logout(session, request[TOKEN])
    request.app[TOKEN_WATCH].revoke(request[TOKEN])
    return json_response({"ok": True})


async def get_me(request: web.Request) -> web.Response:
    language = services(request).settings.general.language
    return json_response({**request[IDENTITY].to_json(), "language": language})


async def _stop_token_watch(app: web.Application) -> None:
    await app[TOKEN_WATCH].close()


def add_routes(app: web.Application) -> None:
    """Login routes, the login throttle and the token watch of websockets."""
    svc = app[SERVICES]
    http = svc.settings.http
    app[LOGIN_THROTTLE] = LoginThrottle(
        window=http.login_window_seconds,
        per_user=http.login_failures_per_user,
        per_address=http.login_failures_per_address,
    )
    app[TOKEN_WATCH] = TokenWatch(svc.sessions, recheck=http.session_recheck_seconds)
    app.on_cleanup.append(_stop_token_watch)
    app.router.add_post("/api/login", post_login)
    app.router.add_post("/api/logout", post_logout)
    app.router.add_get("/api/me", get_me)
    signing.add_routes(app)
