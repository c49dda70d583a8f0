"""The composition root: builds every service and worker and runs the web server.

``build_app`` wires settings, database, push hub, metrics, health, HTTP routes and
the background workers (each an ``async def run()`` owning its reconnect loop, run
under :func:`~crmcomms.supervisor.supervise` in aiohttp's ``cleanup_ctx``,
restarted when it crashes and cancelled on shutdown). ``serve`` runs it until
SIGTERM/SIGINT and talks to systemd (the watchdog stops while a worker has failed
for good, so that systemd restarts the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from core.db import create_engine, session_factory
from core.dbthread import DbWorker
from core.migrate import current_revision, head_revision
from crmcomms.ami.client import AmiClient
from crmcomms.ami.translate import AmiTranslator
from crmcomms.cdr.source import open_source
from crmcomms.config import MailboxSettings, Settings
from crmcomms.errors import StartupError
from crmcomms.health import Health, ami_probe
from crmcomms.keys import MAIL_PARSERS, OUTBOX_WAKEUPS, TELEPHONY
from crmcomms.mail import blob_store
from crmcomms.mail.parsers import RestartingPool, restarting_parser_pool
from crmcomms.mail.smtp import OutboxWakeups, OutboxWorker, SendTuning
from crmcomms.mail.sync import MailboxMetrics, MailboxStores, MailboxWorker, SyncTuning
from crmcomms.metrics import Metrics
from crmcomms.push import PushHub
from crmcomms.retention import RetentionWorker
from crmcomms.scaleout import (
    Guard,
    build_bus,
    catch_up,
    outbox_wakeups,
    scale_out,
    serve_telephony,
    standby_aware,
)
from crmcomms.sdnotify import SystemdNotifier
from crmcomms.services import SERVICES, Services
from crmcomms.supervisor import Supervision, Worker, supervise
from crmcomms.telephony.backfiller import Backfiller
from crmcomms.telephony.call_log import CallLogWriter
from crmcomms.telephony.controls import CallControls
from crmcomms.telephony.dialer import Dialer
from crmcomms.telephony.metrics import TelephonyCollector
from crmcomms.telephony.pops import PopEnricher
from crmcomms.telephony.presence import Presence
from crmcomms.telephony.presence_feed import PresenceFeed
from crmcomms.telephony.service import AmiInbox, TelephonyService
from crmcomms.telephony.tracker import CallTracker
from crmcomms.web import calls, contacts, controls, emails, session, system, tasks, wall, wrapup
from crmcomms.web.access import access_middleware
from crmcomms.web.admin import add_admin_routes
from crmcomms.web.connections import GuardedSite, runner_options
from crmcomms.web.http import (
    auth_middleware,
    error_middleware,
    hide_server_version,
    security_headers,
)
from crmcomms.web.session import permission_middleware
from crmcomms.web.signing import WS_TICKETS
from crmcomms.web.ws import shutdown_hook, websocket_handler

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "web" / "static"


def build_services(settings: Settings) -> Services:
    """Database engine, sessions, push hub and metrics for one process."""
    engine = create_engine(settings.database_url)
    hub, health = PushHub(), Health()
    bus = build_bus(settings.database_url, hub, health)  # several processes: PostgreSQL
    metrics = Metrics(health, lambda: hub.clients)
    observe = metrics.db_batch_latency.labels("worker").observe
    sessions, db = session_factory(engine), DbWorker(engine, observe)
    return Services(settings, engine, sessions, db, hub, metrics, health, bus)


def build_app(
    settings: Settings,
    workers: Mapping[str, Worker] | None = None,
    *,
    own_workers: bool = True,
    supervision: Supervision | None = None,
) -> web.Application:
    """The aiohttp application with every route, its own background workers (telephony,
    mailboxes, outboxes; ``own_workers=False`` for tests that run them by hand) and
    the given ones (by name), all supervised as ``supervision`` says."""
    svc = build_services(settings)
    app = web.Application(
        middlewares=[
            access_middleware(svc.metrics, settings.http.trusted_proxies),
            error_middleware,
            auth_middleware(svc.authenticate),
            permission_middleware,
        ],
        client_max_size=50 * 2**20,
    )
    app[SERVICES] = svc
    app.on_response_prepare.append(security_headers)
    hide_server_version()
    for module in (session, system, contacts, calls, controls, tasks, emails, wall, wrapup):
        module.add_routes(app)
    add_admin_routes(app)
    ws = websocket_handler(
        svc.hub,
        _optional_identity(svc),
        session_end=app[session.TOKEN_WATCH].until_invalid,
        catch_up=catch_up(svc),
        tickets=app[WS_TICKETS],
    )
    app.router.add_get("/ws", ws)
    app.on_shutdown.append(shutdown_hook(svc.hub))
    _add_static(app)
    app.cleanup_ctx.append(_engine_lifetime)
    guard = scale_out(app)  # on PostgreSQL: the bus, and each link run by one process
    app[OUTBOX_WAKEUPS] = outbox_wakeups(svc)  # reaches the outbox's owner
    named = {**(_workers(app, svc, guard) if own_workers else {}), **(workers or {})}
    for name, worker in named.items():
        app.cleanup_ctx.append(_background(name, worker, supervision or Supervision()))
    return app


def _workers(app: web.Application, svc: Services, guard: Guard) -> dict[str, Worker]:
    workers: dict[str, Worker] = {}
    workers["retention"] = RetentionWorker(svc).run
    if svc.settings.ami.enabled:
        telephony = _telephony(svc)
        app[TELEPHONY] = telephony
        serve_telephony(app, telephony)  # the desk and dialer, forwarded to the owner
        svc.health.add_probe("ami", standby_aware("ami", ami_probe(telephony.client), app))
        workers["telephony"] = guard("ami", telephony.run)
    wakeups = app[OUTBOX_WAKEUPS]
    if svc.settings.mailboxes:
        parsers = _parser_pool(app)
        for box in svc.settings.mailboxes:
            mailbox = mailbox_worker(svc, box, executor=parsers)
            workers[f"mailbox:{box.name}"] = guard(f"mailbox:{box.name}", mailbox.run)
            outbox = outbox_worker(svc, box, wakeups)
            workers[f"outbox:{box.name}"] = guard(f"outbox:{box.name}", outbox.run)
    return workers


def mailbox_worker(
    svc: Services,
    box: MailboxSettings,
    tuning: SyncTuning | None = None,
    executor: Executor | None = None,
) -> MailboxWorker:
    """The IMAP mirror of ``box`` with what it uses: the database, the attachment store,
    the publisher, its metrics and the health report."""
    stores = MailboxStores(svc.sessions, svc.engine, blob_store(svc.settings))
    metrics = MailboxMetrics.of(svc.metrics, box.name)
    return MailboxWorker(box, stores, svc.publisher, metrics, svc.health, tuning, executor)


def outbox_worker(
    svc: Services,
    box: MailboxSettings,
    wakeups: OutboxWakeups | None = None,
    tuning: SendTuning | None = None,
) -> OutboxWorker:
    """The SMTP outbox of ``box`` with what it uses: the database, the publisher, the
    outbox gauge and the health report."""
    return OutboxWorker(
        box, svc.sessions, svc.publisher, svc.metrics.outbox, svc.health, wakeups, tuning
    )


def _telephony(svc: Services) -> TelephonyService:
    """The AMI link and what it feeds: the edge translating into the one ordered queue,
    the tracker, the pop enricher and the call-log writer, presence, controls, dialer."""
    settings, ami = svc.settings, svc.settings.ami
    region = settings.general.default_region
    inbox = AmiInbox()
    edge = AmiTranslator(inbox.put_event, inbox.drop)
    client = AmiClient(ami, edge, on_connected=inbox.relist, keep=edge.keep)
    tracker = CallTracker(ami.agent_channel_patterns)
    call_log = CallLogWriter(svc.db, svc.publisher, svc.metrics)
    presence = PresenceFeed(Presence(ami.agent_channel_patterns), svc.publisher)
    pops = PopEnricher(
        svc.db,
        svc.publisher,
        svc.metrics,
        call_log,
        region=region,
        suffix_digits=settings.lookup.suffix_digits,
        queue_members=presence.presence.queue_members_json,
    )
    controls = CallControls(client, ami, tracker.channels_of, presence.presence)
    source = open_source(settings.cdr)
    backfiller = None
    if source is not None:
        margin = timedelta(seconds=settings.cdr.margin_seconds)
        backfiller = Backfiller(source, svc.db, inbox.put_backfill, tracker.agent_of, margin=margin)
    telephony = TelephonyService(
        inbox,
        client,
        edge,
        tracker,
        pops=pops,
        call_log=call_log,
        presence=presence,
        db=svc.db,
        controls=controls,
        dialer=Dialer(client, ami, region),
        backfiller=backfiller,
    )
    svc.metrics.registry.register(TelephonyCollector(telephony))
    return telephony


def _parser_pool(app: web.Application) -> RestartingPool:
    """Processes that parse mail on every core (replaced when one dies); shut down after
    the workers stopped."""
    pool = restarting_parser_pool(os.cpu_count() or 1)
    app[MAIL_PARSERS] = pool  # the API composes outgoing mail there too

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    app.cleanup_ctx.append(lifetime)
    return pool


def _optional_identity(svc: Services) -> Callable[[str], Coroutine[Any, Any, Any]]:
    from core.errors import AuthError

    async def authenticate(token: str) -> Any:
        try:
            return await svc.authenticate(token)
        except AuthError:
            return None

    return authenticate


def _add_static(app: web.Application) -> None:
    if not (STATIC / "index.html").exists():
        return

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)


async def _engine_lifetime(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[SERVICES].db.close()
    await app[SERVICES].engine.dispose()


def _background(
    name: str, worker: Worker, supervision: Supervision
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        svc = app[SERVICES]
        restarts = svc.metrics.worker_restarts
        supervised = supervise(name, worker, svc.health, restarts, supervision)
        task = asyncio.create_task(supervised, name=f"worker:{name}")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return lifetime


async def check_schema(svc: Services) -> None:
    """Refuse to start on a database that is not at the code's migration head."""
    current, head = await current_revision(svc.engine), head_revision()
    if current != head:
        raise StartupError(
            f"database schema is at {current or 'nothing'}, this version needs {head}: "
            "run `crmcomms db upgrade`"
        )


async def serve(
    app: web.Application, stop: asyncio.Event, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve ``app`` until ``stop`` is set; tells systemd READY/STOPPING/WATCHDOG.

    ``on_ready`` is called with the URL once the port is bound.
    """
    svc = app[SERVICES]
    await check_schema(svc)
    notifier = SystemdNotifier()
    http = svc.settings.http
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_options(http))
    await runner.setup()
    try:
        site = GuardedSite.of(runner, http)
        await site.start()
        url = f"http://{svc.settings.http.host}:{_bound_port(runner)}"
        log.info("listening on %s", url)
        if on_ready is not None:
            on_ready(url)
        notifier.notify("READY=1")
        watchdog = asyncio.create_task(notifier.watchdog(svc.health.fatal))
        await stop.wait()
        log.info("stopping")
        notifier.notify("STOPPING=1")
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
    finally:
        await runner.cleanup()
    log.info("stopped")


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return 0


async def run_until_signalled(
    app: web.Application, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, stop, on_ready)
