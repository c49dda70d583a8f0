"""What every part of the daemon may depend on, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from core.agents import AgentIdentity, identify
from core.db import SessionFactory
from core.dbthread import DbWorker
from crmcomms.config import Settings
from crmcomms.health import Health
from crmcomms.metrics import Metrics
from crmcomms.push import Publisher, PushHub


@dataclass(frozen=True)
class Services:
    """Settings, database, push hub and metrics shared by handlers and workers."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    db: DbWorker
    hub: PushHub
    metrics: Metrics
    health: Health = field(default_factory=Health)
    bus: Publisher | None = None  # several processes on PostgreSQL: crmcomms.pgbus

    @property
    def publisher(self) -> Publisher:
        """Where producers publish: the bus when there is one, else the hub."""
        return self.bus or self.hub

    @property
    def token_ttl(self) -> timedelta:
        return timedelta(hours=self.settings.http.token_ttl_hours)

    async def authenticate(self, token: str) -> AgentIdentity:
        """The agent owning ``token``; AuthError otherwise."""
        async with self.sessions() as session:
            return await identify(session, token)


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    """The services of the application handling ``request``."""
    return request.app[SERVICES]
