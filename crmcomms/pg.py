"""Plain asyncpg sessions beside the SQLAlchemy engine, for what an engine cannot do.

The PostgreSQL bus listens (``LISTEN`` holds a session) and the ownership of the
links lives in session-level advisory locks: both need one long-lived connection
of their own, named after this process in ``pg_stat_activity`` so that an admin
(and ``check-config``) can see which process holds what. The server is told to
notice a vanished client within seconds (TCP keepalives), so that the locks of a
process cut off by the network are freed for the others.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from crmcomms.ami.backoff import ReconnectBackoff

#: The first key of every advisory lock of ours ("crm"); the second names the lock.
LOCK_NAMESPACE = 0x63726D
#: How long a connection attempt may take.
CONNECT_TIMEOUT = 5.0
#: The server's TCP keepalive for our sessions: idle seconds, interval, probes.
_KEEPALIVE = {
    "tcp_keepalives_idle": "2",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "5000",
}
#: The longest wait between two reconnect attempts.
MAX_RECONNECT_DELAY = 5.0
#: Errors that mean "the database is gone or refused us": reconnect.
CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def is_postgres(url: str) -> bool:
    """Whether the database URL names PostgreSQL."""
    return make_url(url).get_backend_name() == "postgresql"


def dsn_of(url: str) -> str:
    """The libpq-style DSN asyncpg takes, from the SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def instance_name() -> str:
    """This process as other processes see it: ``crmcomms host:pid``."""
    return f"crmcomms {socket.gethostname()}:{os.getpid()}"


async def connect(url: str, role: str) -> asyncpg.Connection:
    """A session named ``<instance> <role>`` in ``pg_stat_activity``."""
    settings = {**_KEEPALIVE, "application_name": f"{instance_name()} {role}"[:63]}
    return await asyncpg.connect(dsn_of(url), timeout=CONNECT_TIMEOUT, server_settings=settings)


def reconnect_backoff() -> ReconnectBackoff:
    """The AMI link's reconnect schedule, for database sessions: fast at first, 5 s at most."""
    return ReconnectBackoff(MAX_RECONNECT_DELAY, random.random, time.monotonic())


def drop(conn: asyncpg.Connection | None) -> None:
    """Close ``conn`` at once, without waiting on a server that may be gone."""
    if conn is not None and not conn.is_closed():
        conn.terminate()


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, for a log line."""
    return f"{type(exc).__name__}: {exc}".split("\n", 1)[0]


Session = Callable[[asyncpg.Connection], Awaitable[None]]
"""Work on one long-lived connection; returns or raises when the connection is gone."""


async def keep_session(
    url: str, role: str, session: Session, lost: Callable[[str], None], ended: Callable[[], None]
) -> None:
    """Run ``session`` on a connection of its own (``role`` in ``pg_stat_activity``) and
    again on a new one, after a backoff, whenever it fails, until cancelled:
    ``lost(why)`` when the connection failed, ``ended()`` after every session."""
    backoff = reconnect_backoff()
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await connect(url, role)
            backoff.link_up(time.monotonic())
            await session(conn)
        except CONNECTION_ERRORS as exc:
            lost(describe(exc))
        finally:
            ended()
            drop(conn)
        backoff.link_down(time.monotonic())
        await asyncio.sleep(backoff.next_delay(time.monotonic()))
