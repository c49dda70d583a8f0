"""Agent administration over HTTP, for admins only, and the admin page (``/admin``).

The same services as ``crmcomms agent ...`` (:mod:`core.agent_admin`):

- ``GET /api/agents``, ``GET /api/agents/{agent_id}``
- ``POST /api/agents`` {name, password, email?, role?, extensions?}
- ``PUT /api/agents/{agent_id}`` {name?, email?, role?, extensions?}
- ``POST /api/agents/{agent_id}/password`` {password}
- ``POST /api/agents/{agent_id}/disable``, ``.../enable``
- ``DELETE /api/agents/{agent_id}``

Every handler checks the admin role itself as well as the permission table
(``crmcomms/web/session.py``). Clashes answer 409 naming the field.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.agent_admin import (
    AgentChanges,
    change_agent,
    list_agents,
    remove_agent,
    set_disabled,
    set_password,
    show_agent,
)
from core.agents import add_agent
from crmcomms.services import services
from crmcomms.web.http import json_response, read_model, require_role
from crmcomms.web.imports import add_import_routes

ADMIN_PAGE = Path(__file__).parent / "static" / "admin.html"


class NewAgent(BaseModel):
    """Body of POST /api/agents."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=100)
    password: str = Field(max_length=1000)
    email: str = Field(default="", max_length=320)
    role: str = "agent"
    extensions: tuple[str, ...] = Field(default=(), max_length=20)


class AgentUpdate(BaseModel):
    """Body of PUT /api/agents/{id}; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    role: str | None = None
    extensions: tuple[str, ...] | None = Field(default=None, max_length=20)


class NewPassword(BaseModel):
    """Body of POST /api/agents/{id}/password."""

    model_config = ConfigDict(extra="forbid")
    password: str = Field(max_length=1000)


def _agent_id(request: web.Request) -> int:
    require_role(request, "admin")
    raw = request.match_info["agent_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound(reason="agent not found")
    return int(raw)


async def get_agents(request: web.Request) -> web.Response:
    require_role(request, "admin")
    async with services(request).sessions() as session:
        agents = await list_agents(session)
    return json_response({"agents": [agent.to_json() for agent in agents]})


async def get_agent(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    async with services(request).sessions() as session:
        agent = await show_agent(session, agent_id)
    return json_response(agent.to_json())


async def post_agent(request: web.Request) -> web.Response:
    require_role(request, "admin")
    body = await read_model(request, NewAgent)
    svc = services(request)
    pattern = svc.settings.ami.extension_pattern
    async with svc.sessions.begin() as session:
        identity = await add_agent(
            session,
            body.name,
            body.password,
            body.extensions,
            body.email,
            body.role,
            extension_pattern=pattern,
        )
        agent = await show_agent(session, identity.id)
    return json_response(agent.to_json(), status=201)


async def put_agent(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    body = await read_model(request, AgentUpdate)
    svc = services(request)
    changes = AgentChanges(body.name, body.email, body.role, body.extensions)
    async with svc.sessions.begin() as session:
        agent = await change_agent(session, agent_id, changes, svc.settings.ami.extension_pattern)
    return json_response(agent.to_json())


async def post_password(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    body = await read_model(request, NewPassword)
    async with services(request).sessions.begin() as session:
        agent = await set_password(session, agent_id, body.password)
    return json_response(agent.to_json())


async def post_disable(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    async with services(request).sessions.begin() as session:
        agent = await set_disabled(session, agent_id, True)
    return json_response(agent.to_json())


async def post_enable(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    async with services(request).sessions.begin() as session:
        agent = await set_disabled(session, agent_id, False)
    return json_response(agent.to_json())


async def delete_agent(request: web.Request) -> web.Response:
    agent_id = _agent_id(request)
    async with services(request).sessions.begin() as session:
        await remove_agent(session, agent_id)
    return web.Response(status=204)


async def get_admin_page(_request: web.Request) -> web.FileResponse:
    """The page itself is public (it holds no data); its API calls need an admin token."""
    return web.FileResponse(ADMIN_PAGE)


def add_admin_routes(app: web.Application) -> None:
    """The agent administration API, the admin page and the contact imports' progress."""
    app.router.add_get("/admin", get_admin_page)
    app.router.add_get("/api/agents", get_agents)
    app.router.add_post("/api/agents", post_agent)
    app.router.add_get("/api/agents/{agent_id}", get_agent)
    app.router.add_put("/api/agents/{agent_id}", put_agent)
    app.router.add_delete("/api/agents/{agent_id}", delete_agent)
    app.router.add_post("/api/agents/{agent_id}/password", post_password)
    app.router.add_post("/api/agents/{agent_id}/disable", post_disable)
    app.router.add_post("/api/agents/{agent_id}/enable", post_enable)
    add_import_routes(app)
