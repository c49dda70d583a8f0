"""Calls API: the call log, recordings (with HTTP Range) and click-to-dial."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.agents import AgentIdentity
from core.calls import CallFilter, call_has_agent, call_json, get_call, list_calls
from core.errors import InvalidInput, NotFound
from core.models import Call
from crmcomms.keys import DIALER
from crmcomms.recordings import RecordingFinder
from crmcomms.services import SERVICES, services
from crmcomms.web.http import IDENTITY, int_param, json_response, optional_id, path_id, read_model

STATUSES = (
    "ringing",
    "talking",
    "answered",
    "missed",
    "busy",
    "failed",
    "abandoned",
    "unknown",
)


def _since(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(name, "must be an ISO 8601 date or time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filter(request: web.Request) -> CallFilter:
    query, identity = request.query, request[IDENTITY]
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
    return CallFilter(
        status=status,
        agent=query.get("agent") or None,
        contact=optional_id(request, "contact"),
        since=_since(query.get("since"), "since"),
        until=_since(query.get("until"), "until"),
        limit=int_param(request, "limit", 50, maximum=500),
        extensions=None if identity.sees_everything else identity.extensions,
    )


async def get_calls(request: web.Request) -> web.Response:
    flt = _filter(request)
    async with services(request).sessions() as session:
        rows = await list_calls(session, flt)
    region = services(request).settings.general.default_region
    return json_response({"calls": [call_json(c, region) for c in rows]})


async def _visible_call(request: web.Request) -> Call:
    """The call of the URL, if the caller may see it (supervisors, or one of its agents)."""
    call_id = path_id(request, "call_id")
    identity: AgentIdentity = request[IDENTITY]
    async with services(request).sessions() as session:
        call = await get_call(session, call_id)
        if not identity.sees_everything and not await call_has_agent(
            session, call.id, identity.extensions
        ):
            raise web.HTTPForbidden(reason="not your call")
    return call


async def get_one_call(request: web.Request) -> web.Response:
    region = services(request).settings.general.default_region
    return json_response(call_json(await _visible_call(request), region))


RECORDINGS: web.AppKey[RecordingFinder] = web.AppKey("recordings", RecordingFinder)


async def get_recording(request: web.Request) -> web.FileResponse:
    call = await _visible_call(request)
    path = await request.app[RECORDINGS].find(call.recording_path, call.started_at)
    if path is None:
        raise NotFound(f"no recording for call {call.id}")
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


class DialInput(BaseModel):
    """Body of POST /api/calls."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=64)
    extension: str | None = None


async def post_call(request: web.Request) -> web.Response:
    body = await read_model(request, DialInput)
    identity = request[IDENTITY]
    extension = body.extension or min(identity.extensions, default="")
    if not extension or extension not in identity.extensions:
        raise InvalidInput("extension", "you have no such extension to call from")
    dialer = request.app.get(DIALER)
    if dialer is None:
        raise web.HTTPServiceUnavailable(reason="telephony is not configured (ami.enabled)")
    result = await dialer.originate(extension, body.to)
    return json_response(result.to_json(), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/calls", get_calls)
    app.router.add_post("/api/calls", post_call)
    app.router.add_get("/api/calls/{call_id}", get_one_call)
    app.router.add_get("/api/calls/{call_id}/recording", get_recording)
    app[RECORDINGS] = RecordingFinder(app[SERVICES].settings.ami.recordings_dir)
