"""Health and metrics endpoints for admins and monitoring."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

from crmcomms.services import services
from crmcomms.telephony.service import TELEPHONY
from crmcomms.web.http import json_response


async def get_healthz(request: web.Request) -> web.Response:
    """200 with component states when the database answers, 503 otherwise."""
    svc = services(request)
    try:
        async with svc.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # any driver error means "not healthy"; the reason is reported
        database = f"error: {type(exc).__name__}"
    healthy = database == "ok"
    body = {
        "status": "ok" if healthy else "degraded",
        "database": database,
        "ami": _ami_state(request.app),
        "mailboxes": svc.health.mailboxes,
        "websocket_clients": svc.hub.clients,
    }
    return json_response(body, status=200 if healthy else 503)


def _ami_state(app: web.Application) -> str:
    telephony = app.get(TELEPHONY)
    return telephony.link_state() if telephony is not None else "disabled"


async def get_metrics(request: web.Request) -> web.Response:
    body = services(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/metrics", get_metrics)
