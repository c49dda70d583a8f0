"""Call controls and queue presence for the agent page.

- ``POST /api/calls/{id}/hangup``, ``/hold``, ``/resume``, ``/transfer``
  (``{"to": "103", "kind": "blind"|"attended", "queue": false}``),
  ``/transfer/complete``, ``/transfer/cancel``: 202 with Asterisk's message;
- ``GET /api/presence``: the caller's own extensions (state, queue memberships);
- ``POST /api/presence`` ``{"paused": true, "reason": "lunch", "queue": null}``.

Only on the caller's own live calls: the call must be in progress (the
tracker's snapshot of it) and one of the caller's extensions one of its agents
(:func:`core.calls.agents_of`, the definition ``call_agents`` stores); the
action then acts on that extension's own channel. Supervisors too act only on
their own calls. The check and the action run where the AMI link and the
tracker are (:class:`crmcomms.telephony.desk.CallDesk`: this process, or the
link's owner when several daemons share PostgreSQL); the AMI side is
:mod:`crmcomms.telephony.controls`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.calls import get_call
from core.errors import Conflict, NotFound
from crmcomms.keys import CALL_DESK
from crmcomms.services import services
from crmcomms.web.http import IDENTITY, json_response, read_model

if TYPE_CHECKING:
    from crmcomms.telephony.desk import CallDesk


def call_desk(request: web.Request) -> CallDesk:
    """Where telephony requests run; 503 when AMI is not enabled."""
    desk = request.app.get(CALL_DESK)
    if desk is None:
        raise web.HTTPServiceUnavailable(reason="telephony is not configured (ami.enabled)")
    return desk


async def linkedid_of(request: web.Request) -> str:
    """The Linkedid of the URL's call: 404 unknown call."""
    call_id = request.match_info["call_id"]
    if not call_id.isdigit():
        raise NotFound(f"call {call_id} not found")
    async with services(request).sessions() as session:
        return (await get_call(session, int(call_id))).linkedid


class TransferInput(BaseModel):
    """Body of POST /api/calls/{id}/transfer."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=80)
    kind: Literal["blind", "attended"] = "blind"
    queue: bool = False


def control(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler running the control ``name`` on the caller's own live call."""

    async def handler(request: web.Request) -> web.Response:
        linkedid = await linkedid_of(request)
        extensions = request[IDENTITY].extensions
        message = await call_desk(request).control(name, linkedid, extensions)
        return json_response({"state": "sent", "message": message}, status=202)

    return handler


async def post_transfer(request: web.Request) -> web.Response:
    body = await read_model(request, TransferInput)
    linkedid = await linkedid_of(request)
    extensions = request[IDENTITY].extensions
    if body.kind == "attended":
        if body.queue:
            raise Conflict("an attended transfer goes to an extension, not a queue")
        message = await call_desk(request).control(
            "attended_transfer", linkedid, extensions, to=body.to
        )
    else:
        message = await call_desk(request).control(
            "blind_transfer", linkedid, extensions, to=body.to, queue=body.queue
        )
    return json_response({"state": "sent", "message": message}, status=202)


class PauseInput(BaseModel):
    """Body of POST /api/presence."""

    model_config = ConfigDict(extra="forbid")
    paused: bool
    reason: str = Field(default="", max_length=80)
    queue: str | None = Field(default=None, max_length=80)


async def get_presence(request: web.Request) -> web.Response:
    agents = await call_desk(request).presence_of(request[IDENTITY].extensions)
    return json_response({"agents": agents})


async def post_presence(request: web.Request) -> web.Response:
    body = await read_model(request, PauseInput)
    extensions = request[IDENTITY].extensions
    messages = await call_desk(request).pause(extensions, body.paused, body.queue, body.reason)
    return json_response({"state": "sent", "messages": messages}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/calls/{call_id}/hangup", control("hangup"))
    app.router.add_post("/api/calls/{call_id}/hold", control("hold"))
    app.router.add_post("/api/calls/{call_id}/resume", control("resume"))
    app.router.add_post("/api/calls/{call_id}/transfer", post_transfer)
    app.router.add_post("/api/calls/{call_id}/transfer/complete", control("complete_transfer"))
    app.router.add_post("/api/calls/{call_id}/transfer/cancel", control("cancel_transfer"))
    app.router.add_get("/api/presence", get_presence)
    app.router.add_post("/api/presence", post_presence)
