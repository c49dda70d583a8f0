"""Which process runs each link, when several daemons share one PostgreSQL.

Every process serves agents, but exactly one may hold the AMI link, each
mailbox's IMAP sync and each outbox sender: two would log every call twice.
The owner of a link is the process whose database session holds its
session-level advisory lock (``pg_try_advisory_lock(LOCK_NAMESPACE, key)``).
PostgreSQL releases the lock when that session ends, however it ends: the
process killed, its connection cut or timed out (the server's TCP keepalives
notice a vanished peer within seconds).

:class:`Ownership` keeps one session per process (named ``crmcomms host:pid
locks`` in ``pg_stat_activity``) and every :data:`POLL` seconds tries the locks
its idle workers wait for; the same query is its keep-alive. :meth:`Ownership.guard`
wraps a worker: it waits until the lock is granted, runs the worker while it is
held, and cancels it at once when the session is lost (a termination
notice, a failed or slow keep-alive), so that a process cut off from the
database stops its links before another one takes them: never two owners.
After a loss a process waits :data:`COOLDOWN` before claiming again, so that a
standby takes over instead of the flapping one. A worker that crashes gives its
lock back (another process may do better) and is restarted by the supervisor.

On takeover the worker starts as after a restart: the telephony worker restores
the calls left open, lists the PBX's channels and reads the CDR of the gap
(:mod:`crmcomms.telephony.service`), so a call that changed during the switch
is still right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg  # type: ignore[import-untyped]
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crmcomms.config import Settings
from crmcomms.health import Health
from crmcomms.pg import (
    CONNECTION_ERRORS,
    LOCK_NAMESPACE,
    connect,
    describe,
    keep_session,
)
from crmcomms.supervisor import Worker

log = logging.getLogger(__name__)

#: Seconds between two lock attempts (and keep-alives) of the lock session.
POLL = 0.5
#: A keep-alive or lock attempt slower than this counts as a lost session.
POLL_TIMEOUT = 2.0
#: Seconds a process that lost its links waits before claiming any again.
COOLDOWN = 2.0

_TRY = "SELECT k, pg_try_advisory_lock($1, k) FROM unnest($2::int[]) AS k"
_OWNERS = """
SELECT l.objid::bigint AS key, a.application_name AS owner
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objsubid = 2 AND l.granted
"""


def links_of(settings: Settings) -> list[str]:
    """The links one process owns at a time: ``ami``, ``mailbox:<name>``, ``outbox:<name>``."""
    links = ["ami"] if settings.ami.enabled else []
    for box in settings.mailboxes:
        links += [f"mailbox:{box.name}", f"outbox:{box.name}"]
    return links


async def describe_owners(settings: Settings) -> str:
    """``owners: ami by host:pid, mailbox:x by nobody`` (for ``check-config``)."""
    links = links_of(settings)
    if not links:
        return "owners: no AMI link or mailbox configured"
    try:
        conn = await connect(settings.database_url, "check-config")
    except CONNECTION_ERRORS as exc:
        return f"owners: cannot ask the database: {describe(exc)}"
    try:
        rows = await conn.fetch(_OWNERS, LOCK_NAMESPACE)
    finally:
        await conn.close()
    owners = {row["key"]: owner_label(row["owner"]) for row in rows}
    held = [
        f"{name} by {owners.get(lock_key(name), 'nobody (no daemon running)')}" for name in links
    ]
    return "owners: " + ", ".join(held)


def lock_key(name: str) -> int:
    """The second key of ``name``'s advisory lock (stable across processes and versions)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def owner_label(application_name: str) -> str:
    """``crmcomms host:pid locks`` -> ``host:pid``."""
    parts = application_name.split()
    return parts[1] if len(parts) >= 2 else application_name


@dataclass(slots=True)
class _Claim:
    """One link this process may own: granted and lost are signalled to its guard."""

    name: str
    key: int
    wanted: bool = False
    held: bool = False
    releasing: bool = False
    granted: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    takeovers: int = 0
    owner: str | None = None  # host:pid of the holder, as last seen


class Ownership:
    """This process's advisory locks on one PostgreSQL session; see the module doc."""

    def __init__(self, url: str, health: Health, *, poll: float = POLL) -> None:
        self._url = url
        self._health = health
        self._poll = poll
        self._claims: dict[str, _Claim] = {}
        self._changed = asyncio.Event()
        self._cooldown_until = 0.0
        self.connected = False

    def guard(self, name: str, worker: Worker) -> Worker:
        """``worker`` run only while this process owns ``name``."""
        claim = self._claims.setdefault(name, _Claim(name, lock_key(name)))
        self._show(claim)

        async def run() -> None:
            while True:
                await self._acquire(claim)
                try:
                    await self._run_while_held(claim, worker)
                finally:
                    if claim.held and not claim.lost.is_set():
                        self._release(claim)  # crashed or cancelled: hand over

        return run

    def owners(self) -> dict[str, str | None]:
        """Each link's owner as last seen (``host:pid``), None if nobody holds it."""
        return {name: claim.owner for name, claim in self._claims.items()}

    def owns(self, name: str) -> bool:
        """Whether this process holds ``name`` now."""
        claim = self._claims.get(name)
        return claim is not None and claim.held

    async def run(self) -> None:
        """The lock session, reconnecting until cancelled (then every lock is released)."""
        await keep_session(self._url, "locks", self._session, self._lost, self._lose_all)

    @staticmethod
    def _lost(why: str) -> None:
        log.error("lock session lost (%s): giving up every link", why)

    async def _session(self, conn: asyncpg.Connection) -> None:
        closed = asyncio.Event()

        def terminated(_conn: object) -> None:
            closed.set()
            self._lose_all()  # at once, before the next poll notices

        conn.add_termination_listener(terminated)
        self.connected = True
        while not closed.is_set():
            async with asyncio.timeout(POLL_TIMEOUT):
                await self._poll_once(conn)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._changed.wait()
            self._changed.clear()
        raise ConnectionError("lock session closed")

    async def _poll_once(self, conn: asyncpg.Connection) -> None:
        """Release what was given back, try what is wanted, see who owns what."""
        for claim in self._claims.values():
            if claim.releasing and claim.held:
                await conn.fetchval("SELECT pg_advisory_unlock($1, $2)", LOCK_NAMESPACE, claim.key)
                claim.held = claim.releasing = False
        wanted = [c for c in self._claims.values() if c.wanted and not c.held]
        if wanted and time.monotonic() >= self._cooldown_until:
            granted = dict(await conn.fetch(_TRY, LOCK_NAMESPACE, [c.key for c in wanted]))
            for claim in wanted:
                if granted.get(claim.key):
                    self._grant(claim)
        rows = await conn.fetch(_OWNERS, LOCK_NAMESPACE)
        owners = {row["key"]: owner_label(row["owner"]) for row in rows}
        for claim in self._claims.values():
            claim.owner = owners.get(claim.key)
            self._show(claim)

    async def _acquire(self, claim: _Claim) -> None:
        claim.wanted = True
        claim.granted.clear()
        self._changed.set()
        await claim.granted.wait()

    async def _run_while_held(self, claim: _Claim, worker: Worker) -> None:
        task = asyncio.create_task(worker(), name=f"owned:{claim.name}")
        lost = asyncio.create_task(claim.lost.wait(), name=f"lost:{claim.name}")
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
                if claim.lost.is_set():
                    log.warning("%s: lock lost, link given up", claim.name)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    def _grant(self, claim: _Claim) -> None:
        claim.held = True
        claim.wanted = False
        claim.takeovers += 1
        claim.lost.clear()
        claim.granted.set()
        log.info("%s: this process owns it now", claim.name)

    def _release(self, claim: _Claim) -> None:
        """Give the lock back on the session's next poll."""
        claim.wanted = False
        claim.releasing = True
        self._changed.set()

    def _lose_all(self) -> None:
        """The session is gone, and with it every lock: stop every owned worker now."""
        self.connected = False
        for claim in self._claims.values():
            claim.releasing = False
            if claim.held:
                claim.held = False
                claim.lost.set()
                self._cooldown_until = time.monotonic() + COOLDOWN
            claim.owner = None
            self._show(claim)

    def _show(self, claim: _Claim) -> None:
        """``owner:<name>`` in /readyz: who holds it, not a readiness condition; while
        another process holds it, the link's own component says ``standby``."""
        state = "owner" if claim.held else "standby"
        name, owner = claim.name, claim.owner
        self._health.set(f"owner:{name}", state, ok=True, required=False, owner=owner)
        if not claim.held:
            self._health.set(name, "standby", ok=True, required=False, owner=owner)

    def claims(self) -> list[tuple[str, bool, int]]:
        """Each link: name, owned by this process now, takeovers by this process."""
        return [(c.name, c.held, c.takeovers) for c in self._claims.values()]


class OwnershipCollector(Collector):
    """Ownership on /metrics: 1 for each link this process owns, takeovers so far."""

    def __init__(self, ownership: Ownership) -> None:
        self._ownership = ownership

    def collect(self) -> Iterator[Metric]:
        owned = GaugeMetricFamily(
            "crmcomms_link_owned", "1 while this process owns the link", labels=["link"]
        )
        taken = CounterMetricFamily(
            "crmcomms_link_takeovers", "Times this process took the link over", labels=["link"]
        )
        for name, held, takeovers in self._ownership.claims():
            owned.add_metric([name], int(held))
            taken.add_metric([name], takeovers)
        yield owned
        yield taken
