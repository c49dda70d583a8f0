"""Login, logout and "who am I"."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from core.agents import login, logout
from crmcomms.services import services
from crmcomms.web.http import IDENTITY, TOKEN, json_response, read_model


class LoginInput(BaseModel):
    """Body of POST /api/login."""

    model_config = ConfigDict(extra="forbid")
    username: str
    password: str


async def post_login(request: web.Request) -> web.Response:
    body = await read_model(request, LoginInput)
    svc = services(request)
    async with svc.sessions.begin() as session:
        token, identity = await login(session, body.username, body.password, svc.token_ttl)
    language = svc.settings.general.language
    return json_response({"token": token, "agent": {**identity.to_json(), "language": language}})


async def post_logout(request: web.Request) -> web.Response:
    async with services(request).sessions.begin() as session:
        await logout(session, request[TOKEN])
    return json_response({"ok": True})


async def get_me(request: web.Request) -> web.Response:
    language = services(request).settings.general.language
    return json_response({**request[IDENTITY].to_json(), "language": language})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/login", post_login)
    app.router.add_post("/api/logout", post_logout)
    app.router.add_get("/api/me", get_me)
