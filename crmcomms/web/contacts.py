"""Contacts API: CRUD, search, caller lookup, history, notes and import."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.contacts import (
    ContactInput,
    create_contact,
    delete_contact,
    get_contact,
    update_contact,
)
from core.errors import InvalidInput
from core.history import (
    DEFAULT_SOURCES,
    HistoryCursor,
    add_note,
    contact_history,
    note_json,
    organization_contact_ids,
    visible_sources,
)
from core.lookup import lookup_contacts
from core.mail.queries import email_history
from core.merge import merge_contacts
from core.models import Call
from core.search import search_contacts
from crmcomms.services import services
from crmcomms.web.http import IDENTITY, MAX_ID, int_param, json_response, path_id, read_model
from crmcomms.web.imports import post_import

HISTORY_SOURCES = (*DEFAULT_SOURCES, email_history)


def _contact_id(request: web.Request) -> int:
    return path_id(request, "contact_id")


async def get_contacts(request: web.Request) -> web.Response:
    svc = services(request)
    async with svc.sessions() as session:
        cards = await search_contacts(
            session,
            request.query.get("q", ""),
            svc.settings.general.default_region,
            limit=int_param(request, "limit", 50, maximum=500),
            offset=int_param(request, "offset", 0, maximum=10**9),
        )
    region = svc.settings.general.default_region
    return json_response({"contacts": [card.to_json(region) for card in cards]})


async def post_contact(request: web.Request) -> web.Response:
    data = await read_model(request, ContactInput)
    svc = services(request)
    async with svc.sessions.begin() as session:
        card = await create_contact(session, data, svc.settings.general.default_region)
    return json_response(card.to_json(_region(request)), status=201)


async def get_one_contact(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        card = await get_contact(session, _contact_id(request))
    return json_response(card.to_json(_region(request)))


async def put_contact(request: web.Request) -> web.Response:
    data = await read_model(request, ContactInput)
    svc = services(request)
    async with svc.sessions.begin() as session:
        card = await update_contact(
            session, _contact_id(request), data, svc.settings.general.default_region
        )
    return json_response(card.to_json(_region(request)))


def _region(request: web.Request) -> str:
    """The region numbers are formatted for (``general.default_region``)."""
    return services(request).settings.general.default_region


class MergeInput(BaseModel):
    """Body of POST /api/contacts/{id}/merge: the duplicate folded into this contact."""

    model_config = ConfigDict(extra="forbid")
    duplicate: int = Field(ge=1, le=2**63 - 1)


async def post_merge(request: web.Request) -> web.Response:
    """Merge a duplicate into the contact of the URL (core.merge); the merged card."""
    data = await read_model(request, MergeInput)
    async with services(request).sessions.begin() as session:
        card = await merge_contacts(session, _contact_id(request), data.duplicate)
    return json_response(card.to_json(_region(request)))


async def delete_one_contact(request: web.Request) -> web.Response:
    async with services(request).sessions.begin() as session:
        await delete_contact(session, _contact_id(request))
    return web.Response(status=204)


async def _timeline(request: web.Request, contact_ids: list[int]) -> web.Response:
    """A page of the timeline: ``?limit=`` entries after ``?before=`` (the ``next`` of
    the page before, a keyset cursor: no offset, no repeats or gaps as entries arrive)."""
    identity = request[IDENTITY]
    extensions = None if identity.sees_everything else identity.extensions
    async with services(request).sessions() as session:
        page = await contact_history(
            session,
            contact_ids,
            sources=visible_sources(HISTORY_SOURCES, extensions, _region(request)),
            limit=int_param(request, "limit", 50, maximum=200),
            before=_history_cursor(request),
        )
    return json_response(
        {
            "items": [item.to_json() for item in page.items],
            "next": page.next.encode() if page.next is not None else None,
        }
    )


def _history_cursor(request: web.Request) -> HistoryCursor | None:
    raw = request.query.get("before")
    if not raw:
        return None
    try:
        return HistoryCursor.decode(raw)
    except ValueError as exc:
        raise InvalidInput("before", "must be the 'next' of an earlier page") from exc


async def get_history(request: web.Request) -> web.Response:
    contact_id = _contact_id(request)
    async with services(request).sessions() as session:
        await get_contact(session, contact_id)
    return await _timeline(request, [contact_id])


async def get_organization_history(request: web.Request) -> web.Response:
    """The timeline of every contact of an organization."""
    organization_id = path_id(request, "organization_id")
    async with services(request).sessions() as session:
        contact_ids = await organization_contact_ids(session, organization_id)
    return await _timeline(request, contact_ids)


class NoteInput(BaseModel):
    """Body of POST /api/contacts/{id}/notes."""

    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=20_000)
    call_id: int | None = Field(default=None, ge=1, le=MAX_ID)


async def post_note(request: web.Request) -> web.Response:
    data = await read_model(request, NoteInput)
    contact_id = _contact_id(request)
    async with services(request).sessions.begin() as session:
        await get_contact(session, contact_id)
        if data.call_id is not None and await session.get(Call, data.call_id) is None:
            raise InvalidInput("call_id", f"there is no call {data.call_id}")
        note = await add_note(session, contact_id, data.body, request[IDENTITY].id, data.call_id)
    return json_response(note_json(note), status=201)


async def get_lookup(request: web.Request) -> web.Response:
    svc = services(request)
    async with svc.sessions() as session:
        result = await lookup_contacts(
            session,
            request.query.get("number", ""),
            svc.settings.general.default_region,
            svc.settings.lookup.suffix_digits,
        )
    return json_response(result.to_json(svc.settings.general.default_region))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/contacts", get_contacts)
    app.router.add_post("/api/contacts", post_contact)
    app.router.add_post("/api/contacts/import", post_import)
    app.router.add_get("/api/contacts/{contact_id}", get_one_contact)
    app.router.add_put("/api/contacts/{contact_id}", put_contact)
    app.router.add_delete("/api/contacts/{contact_id}", delete_one_contact)
    app.router.add_post("/api/contacts/{contact_id}/merge", post_merge)
    app.router.add_get("/api/contacts/{contact_id}/history", get_history)
    app.router.add_post("/api/contacts/{contact_id}/notes", post_note)
    app.router.add_get("/api/organizations/{organization_id}/history", get_organization_history)
    app.router.add_get("/api/lookup", get_lookup)
