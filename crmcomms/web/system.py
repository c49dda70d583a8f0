"""Health, readiness and metrics endpoints for admins, probes and monitoring.

``/healthz`` is liveness (the process serves, the database answers, no worker
failed for good); ``/readyz`` is readiness (also every configured AMI link and
mailbox up, every worker running). Both answer the same JSON, see
:class:`crmcomms.health.Report`; only the verdict behind the status code differs.
"""

from __future__ import annotations

from aiohttp import web

from crmcomms.health import Report, check_database
from crmcomms.services import services
from crmcomms.web.http import json_response


async def get_healthz(request: web.Request) -> web.Response:
    """200 while live, 503 otherwise; per-component state in the body."""
    report = await _report(request)
    return json_response(report.as_json(), status=200 if report.live else 503)


async def get_readyz(request: web.Request) -> web.Response:
    """200 while ready, 503 while a configured link, the database or a worker is down."""
    report = await _report(request)
    return json_response(report.as_json(), status=200 if report.ready else 503)


async def _report(request: web.Request) -> Report:
    svc = services(request)
    await check_database(svc.health, svc.engine)
    return svc.health.report(websocket_clients=svc.hub.clients)


async def get_metrics(request: web.Request) -> web.Response:
    body = services(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/metrics", get_metrics)
