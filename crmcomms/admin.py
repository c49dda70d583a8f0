"""Administrative actions behind the CLI: migrations, agents, contact import and export."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import AgentIdentity, add_agent
from core.db import create_engine
from core.export import export_table, to_csv, to_xlsx
from core.importer import ImportOptions, ImportReport, Progress, import_rows, read_rows
from core.migrate import current_revision, head_revision, upgrade
from crmcomms.app import build_services, check_schema
from crmcomms.config import Settings
from crmcomms.services import Services

T = TypeVar("T")


async def upgrade_database(settings: Settings) -> str | None:
    """Apply all migrations; returns the revision reached."""
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        return await current_revision(engine)
    finally:
        await engine.dispose()


async def database_revisions(settings: Settings) -> tuple[str | None, str | None]:
    """(the revision the database is at, the one this version needs)."""
    engine = create_engine(settings.database_url)
    try:
        return await current_revision(engine), head_revision()
    finally:
        await engine.dispose()


@asynccontextmanager
async def migrated_services(settings: Settings) -> AsyncIterator[Services]:
    """Services on a database that is at the current schema; disposed afterwards."""
    svc = build_services(settings)
    try:
        await check_schema(svc)
        yield svc
    finally:
        await svc.db.close()
        await svc.engine.dispose()


async def in_transaction(settings: Settings, action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``action`` in one transaction of the configured (migrated) database."""
    async with migrated_services(settings) as svc, svc.sessions.begin() as session:
        return await action(session)


async def add_agent_from_cli(
    settings: Settings,
    name: str,
    password: str,
    extensions: Sequence[str],
    email: str,
    role: str,
) -> AgentIdentity:
    """Create an agent in the configured database."""
    pattern = settings.ami.extension_pattern
    return await in_transaction(
        settings,
        lambda session: add_agent(
            session, name, password, extensions, email, role, extension_pattern=pattern
        ),
    )


async def import_contacts_file(
    settings: Settings,
    data: bytes,
    filename: str,
    options: ImportOptions,
    on_progress: Callable[[Progress], None] | None = None,
) -> ImportReport:
    """Import the bytes of a CSV/XLSX file of contacts into the configured database."""
    rows = read_rows(data, filename)
    async with migrated_services(settings) as svc:
        return await import_rows(svc.db, rows, options, on_progress)


async def export_contacts_file(settings: Settings, fmt: str) -> tuple[bytes, int]:
    """Every contact as CSV or XLSX (``fmt``), in the columns the import reads back;
    the file's bytes and the number of contacts."""
    async with migrated_services(settings) as svc:
        table = await svc.db.read(export_table)
    data = to_xlsx(table) if fmt == "xlsx" else to_csv(table)
    return data, len(table) - 1
