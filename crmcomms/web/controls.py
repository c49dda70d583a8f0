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
their own calls. The AMI side is :mod:`crmcomms.telephony.controls`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.calls import agents_of, get_call
from core.errors import Conflict, NotFound
from crmcomms.keys import TELEPHONY
from crmcomms.services import services
from crmcomms.telephony.controls import CallControls
from crmcomms.web.http import IDENTITY, json_response, read_model

if TYPE_CHECKING:
    from crmcomms.telephony.service import TelephonyService


def telephony(request: web.Request) -> TelephonyService:
    """The telephony worker; 503 when AMI is not enabled."""
    service = request.app.get(TELEPHONY)
    if service is None:
        raise web.HTTPServiceUnavailable(reason="telephony is not configured (ami.enabled)")
    return service


async def own_live_call(request: web.Request) -> tuple[str, frozenset[str]]:
    """The Linkedid of the URL's call and the caller's extensions among its agents:
    404 unknown call, 409 not in progress, 403 not the caller's call."""
    call_id = request.match_info["call_id"]
    if not call_id.isdigit():
        raise NotFound(f"call {call_id} not found")
    async with services(request).sessions() as session:
        linkedid = (await get_call(session, int(call_id))).linkedid
    live = next((c for c in telephony(request).active_calls() if c.linkedid == linkedid), None)
    if live is None:
        raise Conflict("the call is not in progress")
    mine = agents_of(live) & request[IDENTITY].extensions
    if not mine:
        raise web.HTTPForbidden(reason="not your call")
    return linkedid, mine


class TransferInput(BaseModel):
    """Body of POST /api/calls/{id}/transfer."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=80)
    kind: Literal["blind", "attended"] = "blind"
    queue: bool = False


Control = Callable[[CallControls, str, frozenset[str]], Awaitable[str]]


def control(act: Control) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler running ``act`` on the caller's own live call."""

    async def handler(request: web.Request) -> web.Response:
        linkedid, mine = await own_live_call(request)
        message = await act(telephony(request).controls, linkedid, mine)
        return json_response({"state": "sent", "message": message}, status=202)

    return handler


async def post_transfer(request: web.Request) -> web.Response:
    body = await read_model(request, TransferInput)
    linkedid, mine = await own_live_call(request)
    controls = telephony(request).controls
    if body.kind == "attended":
        if body.queue:
            raise Conflict("an attended transfer goes to an extension, not a queue")
        message = await controls.attended_transfer(linkedid, mine, body.to)
    else:
        message = await controls.blind_transfer(linkedid, mine, body.to, body.queue)
    return json_response({"state": "sent", "message": message}, status=202)


class PauseInput(BaseModel):
    """Body of POST /api/presence."""

    model_config = ConfigDict(extra="forbid")
    paused: bool
    reason: str = Field(default="", max_length=80)
    queue: str | None = Field(default=None, max_length=80)


async def get_presence(request: web.Request) -> web.Response:
    presence = telephony(request).presence.presence
    extensions = sorted(request[IDENTITY].extensions)
    return json_response({"agents": [presence.agent_json(ext) for ext in extensions]})


async def post_presence(request: web.Request) -> web.Response:
    body = await read_model(request, PauseInput)
    controls = telephony(request).controls
    extensions = request[IDENTITY].extensions
    messages = await controls.pause(extensions, body.paused, body.queue, body.reason)
    return json_response({"state": "sent", "messages": messages}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/calls/{call_id}/hangup", control(CallControls.hangup))
    app.router.add_post("/api/calls/{call_id}/hold", control(CallControls.hold))
    app.router.add_post("/api/calls/{call_id}/resume", control(CallControls.resume))
    app.router.add_post("/api/calls/{call_id}/transfer", post_transfer)
    app.router.add_post(
        "/api/calls/{call_id}/transfer/complete", control(CallControls.complete_transfer)
    )
    app.router.add_post(
        "/api/calls/{call_id}/transfer/cancel", control(CallControls.cancel_transfer)
    )
    app.router.add_get("/api/presence", get_presence)
    app.router.add_post("/api/presence", post_presence)
