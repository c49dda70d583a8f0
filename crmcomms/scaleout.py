"""Several daemons on one PostgreSQL: the bus and the link ownership, wired into an app.

On SQLite nothing changes: one process, the in-memory hub, every worker runs.
On PostgreSQL every process publishes through :class:`~crmcomms.pgbus.PgBus` and
runs each link (AMI, each mailbox, each outbox) only while it owns it
(:class:`~crmcomms.ownership.Ownership`); what the web asks of the AMI link
(click-to-dial, call controls, live presence) is forwarded to its owner
(:class:`~crmcomms.forwarding.Forwarder`). Start-up order: the bus joins the
database's numbering before the port opens; at shutdown the workers stop first,
then the locks are released (another process takes over), then the bus writes
what the workers published last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web

from crmcomms.forwarding import Forwarder
from crmcomms.health import Component, Health, Probe
from crmcomms.keys import CALL_DESK, DIALER
from crmcomms.mail.smtp import OutboxWakeups
from crmcomms.ownership import Ownership, OwnershipCollector
from crmcomms.pg import is_postgres
from crmcomms.pgbus import BusCollector, PgBus
from crmcomms.push import PushHub
from crmcomms.services import SERVICES, Services
from crmcomms.supervisor import Supervision, Worker, supervise
from crmcomms.telephony.desk import CallDesk, ForwardedActions
from crmcomms.telephony.dialer import Dialer

if TYPE_CHECKING:
    from crmcomms.telephony.service import TelephonyService

log = logging.getLogger(__name__)

#: How long the bus may take at shutdown to write the last events.
FINAL_WRITE = 5.0

OWNERSHIP: web.AppKey[Ownership] = web.AppKey("ownership", Ownership)
BUS: web.AppKey[PgBus] = web.AppKey("bus", PgBus)
FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder", Forwarder)

Guard = Callable[[str, Worker], Worker]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def build_bus(database_url: str, hub: PushHub, health: Health) -> PgBus | None:
    """The PostgreSQL bus feeding ``hub``, or None on SQLite."""
    return PgBus(database_url, hub, health) if is_postgres(database_url) else None


def scale_out(app: web.Application) -> Guard:
    """Run the bus and the lock session with ``app`` (PostgreSQL); the guard to wrap
    each link's worker with (on SQLite: the worker itself)."""
    svc = app[SERVICES]
    if not isinstance(svc.bus, PgBus):
        return lambda _name, worker: worker
    bus = app[BUS] = svc.bus
    ownership = app[OWNERSHIP] = Ownership(svc.settings.database_url, svc.health)
    svc.metrics.registry.register(BusCollector(bus))
    svc.metrics.registry.register(OwnershipCollector(ownership))
    forwarder = app[FORWARDER] = Forwarder(svc.settings.database_url, lambda: ownership.owns("ami"))
    app.cleanup_ctx.append(_bus_lifetime)
    app.cleanup_ctx.append(_running("ownership", ownership.run))
    app.cleanup_ctx.append(_running("forwarding", forwarder.run))
    return ownership.guard


def serve_telephony(app: web.Application, telephony: TelephonyService) -> None:
    """The web's way to the AMI link (:data:`CALL_DESK`, :data:`DIALER`): in place on
    SQLite, through the link's owner with several processes."""
    forwarder = app.get(FORWARDER)
    desk = app[CALL_DESK] = CallDesk(telephony, forwarder)
    if forwarder is None:
        app[DIALER] = telephony.dialer
        return
    settings = app[SERVICES].settings
    region = settings.general.default_region
    app[DIALER] = Dialer(ForwardedActions(desk), settings.ami, region)


class BusWakeups(OutboxWakeups):
    """Outbox wake-ups that reach the outbox's owner, whichever process it is."""

    def __init__(self, bus: PgBus) -> None:
        super().__init__()
        self._bus = bus
        bus.on_signal(self._signalled)

    def wake(self, mailbox: str) -> None:
        """Wake the local worker now and the owner's through the bus."""
        super().wake(mailbox)
        self._bus.signal(f"outbox:{mailbox}")

    def _signalled(self, name: str) -> None:
        kind, _, mailbox = name.partition(":")
        if kind == "outbox":
            super().wake(mailbox)


def outbox_wakeups(svc: Services) -> OutboxWakeups:
    """What the API sets when it queues mail: through the bus with several processes."""
    return BusWakeups(svc.bus) if isinstance(svc.bus, PgBus) else OutboxWakeups()


def standby_aware(name: str, probe: Probe, app: web.Application) -> Probe:
    """``probe`` while this process owns ``name`` (or on SQLite), ``standby`` otherwise."""
    ownership = app.get(OWNERSHIP)
    if ownership is None:
        return probe

    def read() -> Component:
        if ownership.owns(name):
            return probe()
        owner = ownership.owners().get(name)
        return Component("standby", True, probe().since, required=False, details={"owner": owner})

    return read


def catch_up(svc: Services) -> Callable[[int], Awaitable[bool]] | None:
    """For ``/ws?since=``: wait until this process delivered what the client saw elsewhere."""
    return svc.bus.caught_up if isinstance(svc.bus, PgBus) else None


async def _bus_lifetime(app: web.Application) -> AsyncIterator[None]:
    bus, svc = app[BUS], app[SERVICES]
    await bus.start()
    restarts = svc.metrics.worker_restarts
    supervised = supervise("bus", bus.run, svc.health, restarts, Supervision())
    task = asyncio.create_task(supervised, name="event-bus")
    yield
    await _final_write(bus)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _final_write(bus: PgBus) -> None:
    """Give the writer a moment for what the stopped workers published last."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FINAL_WRITE):
            while bus.pending:
                await bus.written_more()
    if bus.pending:
        log.warning("event bus: %d event(s) not written at shutdown", bus.pending)


def _running(name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> CleanupContext:
    """A cleanup context running ``run()`` as a task for the app's lifetime."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return lifetime
