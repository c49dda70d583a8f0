"""``crmcomms check-config``: try every external part and report one line per result."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from core.db import create_engine
from core.files import make_private_dir
from core.migrate import current_revision, head_revision
from crmcomms.ami.client import check_login
from crmcomms.ami.stamps import UNKNOWN, TimestampProbe
from crmcomms.cdr.source import open_source
from crmcomms.config import Settings
from crmcomms.mail.check import check_mailbox
from crmcomms.ownership import describe_owners
from crmcomms.pg import is_postgres

Emit = Callable[[str], None]
Check = Callable[[Settings], Awaitable[str | None]]


async def check_database(settings: Settings) -> str | None:
    """The database answers and is at the current schema."""
    engine = create_engine(settings.database_url)
    try:
        current = await current_revision(engine)
    except (SQLAlchemyError, OSError) as exc:
        reason = getattr(exc, "orig", None) or exc
        return f"database: cannot connect: {' '.join(str(reason).split())}"
    finally:
        await engine.dispose()
    head = head_revision()
    if current != head:
        return (
            f"database: schema at {current or 'nothing'}, needs {head}: run `crmcomms db upgrade`"
        )
    return None


async def check_data_dir(settings: Settings) -> str | None:
    """The data dir exists (or can be created) and is writable."""
    path = settings.general.data_dir
    try:
        make_private_dir(path)
    except OSError as exc:
        return f"general.data_dir: cannot create {path}: {exc.strerror}"
    if not os.access(path, os.W_OK):
        return f"general.data_dir: {path} is not writable"
    return None


async def check_ami(settings: Settings, notes: list[str] | None = None) -> str | None:
    """Log in to the AMI with the configured user, list the channels and see whether
    events are stamped (``notes`` gets a line when that cannot be told)."""
    if not settings.ami.enabled:
        return None
    probe = TimestampProbe()
    error = await check_login(settings.ami, actions=[{"Action": "CoreShowChannels"}], probe=probe)
    if error or probe.problem:
        return f"ami: {error or probe.problem}"
    if probe.stamped is None and notes is not None:
        notes.append(f"ami: {UNKNOWN}")
    return None


async def check_recordings(settings: Settings) -> str | None:
    """The recordings dir can be read (only needed with AMI)."""
    path = settings.ami.recordings_dir
    if settings.ami.enabled and not os.access(path, os.R_OK | os.X_OK):
        return f"ami.recordings_dir: {path} is missing or not readable"
    return None


NO_CDR = (
    "no [cdr] configured: calls that start and end while the AMI link is down are not logged, "
    "and calls ending during an outage keep an unknown end"
)


async def check_cdr(settings: Settings) -> tuple[str | None, str]:
    """The CDR source reads fine: (problem, or None and a line on what it holds)."""
    source = open_source(settings.cdr)
    if source is None:
        return None, NO_CDR
    try:
        problem = await source.check()
        return problem, "" if problem else await source.summary()
    finally:
        await source.close()


CHECKS: dict[str, Check] = {
    "data dir": check_data_dir,
    "database": check_database,
    "ami": check_ami,
    "recordings": check_recordings,
}


async def run_checks(settings: Settings, emit: Emit) -> list[str]:
    """Run every check; emit one line each; return the problems."""
    problems: list[str] = []
    notes: list[str] = []
    checks: dict[str, Check] = {**CHECKS, "ami": partial(check_ami, notes=notes)}
    for name, check in checks.items():
        problem = await check(settings)
        if problem:
            problems.append(problem)
            emit(f"FAIL {problem}")
        elif name not in ("ami", "recordings") or settings.ami.enabled:
            emit(f"ok   {name}")
        for note in notes:
            emit(f"note {note}")
        notes.clear()
    problem, info = await check_cdr(settings)
    if problem:
        problems.append(problem)
        emit(f"FAIL {problem}")
    else:
        emit(f"ok   cdr: {info}" if settings.cdr.configured else f"note {info}")
    for box in settings.mailboxes:
        found = await check_mailbox(box)
        problems += found.problems
        for problem in found.problems:
            emit(f"FAIL {problem}")
        if not found.problems:
            emit(f"ok   mailbox {box.name} (IMAP and SMTP), mirrors {', '.join(found.folders)}")
    if is_postgres(settings.database_url) and not any(p.startswith("database") for p in problems):
        emit(f"note {await describe_owners(settings)}")  # several daemons: who runs what
    return problems
