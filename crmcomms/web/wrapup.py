"""Wrap-up API: a call's disposition and contact (as the agent confirms it), the codes to
choose from, and the tags and tasks an agent adds from the contact view.

A change to a call is pushed as ``call.updated`` (the call's JSON) to its agents and
the supervisors, so that every pop, history and wall showing it follows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import AgentIdentity
from core.calls import call_has_agent, call_json, get_call
from core.contacts import get_contact, set_tags
from core.history import task_json
from core.models import CallAgent
from core.tasks import create_task
from core.wrapup import link_contact, set_disposition
from crmcomms.push import Audience
from crmcomms.services import services
from crmcomms.web.http import IDENTITY, MAX_ID, json_response, path_id, read_model


class DispositionInput(BaseModel):
    """Body of PUT /api/calls/{id}/disposition: a configured code, or null to clear it."""

    model_config = ConfigDict(extra="forbid")
    disposition: str | None = Field(max_length=40)


class LinkInput(BaseModel):
    """Body of POST /api/calls/{id}/contact: the contact the agent says the call is with."""

    model_config = ConfigDict(extra="forbid")
    contact_id: int = Field(ge=1, le=MAX_ID)


class TagsInput(BaseModel):
    """Body of PUT /api/contacts/{id}/tags."""

    model_config = ConfigDict(extra="forbid")
    tags: tuple[Annotated[str, Field(min_length=1, max_length=40)], ...] = Field(max_length=30)


class TaskInput(BaseModel):
    """Body of POST /api/contacts/{id}/tasks: a to-do for the agent (or named extensions)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    title: str = Field(min_length=1, max_length=200)
    assignees: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = ()


async def get_wrapup(request: web.Request) -> web.Response:
    """The disposition codes and how long ended pops stay open."""
    wrapup = services(request).settings.wrapup
    return json_response(
        {"dispositions": list(wrapup.dispositions), "fold_after_seconds": wrapup.fold_after_seconds}
    )


async def _check_visible(session: AsyncSession, identity: AgentIdentity, call_id: int) -> None:
    await get_call(session, call_id)
    if not identity.sees_everything and not await call_has_agent(
        session, call_id, identity.extensions
    ):
        raise web.HTTPForbidden(reason="not your call")


async def put_disposition(request: web.Request) -> web.Response:
    body = await read_model(request, DispositionInput)
    allowed = services(request).settings.wrapup.dispositions

    async def change(session: AsyncSession, call_id: int) -> None:
        agent = request[IDENTITY].id
        await set_disposition(session, call_id, body.disposition, allowed, agent)

    return await _change_call(request, change)


async def post_link(request: web.Request) -> web.Response:
    body = await read_model(request, LinkInput)
    settings = services(request).settings
    region, suffix = settings.general.default_region, settings.lookup.suffix_digits

    async def change(session: AsyncSession, call_id: int) -> None:
        await link_contact(session, call_id, body.contact_id, region, suffix)

    return await _change_call(request, change)


async def _change_call(
    request: web.Request, change: Callable[[AsyncSession, int], Awaitable[None]]
) -> web.Response:
    """Apply ``change`` to the call of the URL if the caller may see it; then :func:`_updated`."""
    call_id = path_id(request, "call_id")
    async with services(request).sessions.begin() as session:
        await _check_visible(session, request[IDENTITY], call_id)
        await change(session, call_id)
    return await _updated(request, call_id)


async def _updated(request: web.Request, call_id: int) -> web.Response:
    """Answer with the call's JSON and push it as ``call.updated`` to its agents."""
    svc = services(request)
    async with svc.sessions() as session:
        call = call_json(await get_call(session, call_id), svc.settings.general.default_region)
        query = select(CallAgent.extension).where(CallAgent.call_id == call_id)
        agents = frozenset(await session.scalars(query))
    svc.publisher.publish("call.updated", {"call": call}, Audience(extensions=agents))
    return json_response(call)


async def put_tags(request: web.Request) -> web.Response:
    body = await read_model(request, TagsInput)
    svc = services(request)
    async with svc.sessions.begin() as session:
        card = await set_tags(session, path_id(request, "contact_id"), body.tags)
    return json_response(card.to_json(svc.settings.general.default_region))


async def post_task(request: web.Request) -> web.Response:
    body = await read_model(request, TaskInput)
    contact_id, identity = path_id(request, "contact_id"), request[IDENTITY]
    assignees = body.assignees or tuple(identity.extensions)
    svc = services(request)
    async with svc.sessions.begin() as session:
        await get_contact(session, contact_id)
        task = task_json(await create_task(session, body.title, contact_id, assignees))
    audience = Audience(extensions=frozenset(task["assignees"]))
    svc.publisher.publish("task.created", {"task": task}, audience)
    return json_response(task, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/wrapup", get_wrapup)
    app.router.add_put("/api/calls/{call_id}/disposition", put_disposition)
    app.router.add_post("/api/calls/{call_id}/contact", post_link)
    app.router.add_put("/api/contacts/{contact_id}/tags", put_tags)
    app.router.add_post("/api/contacts/{contact_id}/tasks", post_task)
