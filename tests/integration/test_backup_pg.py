"""``crmcomms backup`` / ``restore`` on a real PostgreSQL, as an admin runs them.

The database belongs to an ordinary role (no superuser), as in a deployment:
``pg_dump`` backs it up, the restore loads it in one transaction.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import text

from core.contacts import ContactInput, create_contact
from core.db import create_engine, session_factory
from crmcomms.cli import main
from tests.conftest import PG_BIN, PostgresServer

pytestmark = pytest.mark.postgres
ROLE = "crmcomms_owner"


def owned_database(postgres: PostgresServer) -> str:
    """A new database owned by an ordinary role; its URL as that role (with a password)."""
    name = f"backup_{uuid4().hex}"
    psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "crm"]
    psql += ["-X", "-q"]
    create_role = (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN "
        f"CREATE ROLE {ROLE} LOGIN PASSWORD 'secret'; END IF; END $$"
    )
    subprocess.run([*psql, "-d", "postgres", "-c", create_role], check=True)
    subprocess.run(
        [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {name} OWNER {ROLE}"], check=True
    )
    return f"postgresql+asyncpg://{ROLE}:secret@127.0.0.1:{postgres.port}/{name}"


def config_for(tmp: Path, url: str) -> tuple[str, str]:
    config = tmp / "crmcomms.toml"
    tmp.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[general]\ndata_dir = "{tmp / "data"}"\n[http]\nport = 0\n[database]\nurl = "{url}"\n'
    )
    return ("--config", str(config))


def sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run ``statements`` in one transaction; the last one's rows."""

    async def run() -> list[tuple[object, ...]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    result = await conn.execute(text(statement))
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def add_contacts(url: str, *display_names: str) -> None:
    """Create contacts the way the daemon does."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with session_factory(engine).begin() as session:
                for name in display_names:
                    await create_contact(session, ContactInput(display_name=name), "DE")
        finally:
            await engine.dispose()

    asyncio.run(run())


def upgraded_site(postgres: PostgresServer, where: Path) -> tuple[str, tuple[str, str]]:
    """A database at the current schema and a config for it: its URL and --config."""
    url = owned_database(postgres)
    config = config_for(where, url)
    assert main(["db", "upgrade", *config]) == 0
    return url, config


def names(url: str) -> set[str]:
    return {str(name) for (name,) in sql(url, "SELECT display_name FROM contacts")}


def test_backup_change_restore(
    postgres: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, c = upgraded_site(postgres, tmp_path / "site")
    add_contacts(url, "Anna Berg", "Bernd Busy")
    blob = tmp_path / "site" / "data" / "blobs" / "ab" / ("ab" + "0" * 62)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"attachment")
    capsys.readouterr()

    backup = tmp_path / "backup"
    assert main(["backup", str(backup), *c]) == 0
    assert "backup of the postgresql database" in capsys.readouterr().out
    assert (backup / "database.pgdump").read_bytes().startswith(b"PGDMP")  # pg_dump -Fc
    assert (backup / "database.pgdump").stat().st_mode & 0o077 == 0

    # what happens after the backup: a contact renamed, one deleted, one added, a blob
    # lost, and a newer schema's table and function (an upgrade that went wrong)
    sql(
        url,
        "UPDATE contacts SET display_name = 'Anna Renamed' WHERE display_name = 'Anna Berg'",
        "DELETE FROM contacts WHERE display_name = 'Bernd Busy'",
        "CREATE TABLE newer_feature (id serial PRIMARY KEY)",
        "CREATE FUNCTION newer_function() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    )
    add_contacts(url, "Carla New")
    blob.unlink()
    assert names(url) == {"Anna Renamed", "Carla New"}

    assert main(["restore", str(backup), *c]) == 1
    assert "--force replaces them" in capsys.readouterr().err
    assert main(["restore", str(backup), *c, "--force"]) == 0
    out = capsys.readouterr().out
    assert "restored the backup of" in out and "db upgrade" not in out

    assert names(url) == {"Anna Berg", "Bernd Busy"}
    assert blob.read_bytes() == b"attachment"
    leftovers = sql(
        url,
        "SELECT to_regclass('newer_feature')::text, to_regproc('newer_function')::text",
    )
    assert leftovers == [(None, None)]
    # the sequences came back too: a new contact gets a fresh id
    add_contacts(url, "Dora After")
    assert len(names(url)) == 3
    # what was replaced is kept aside in the data dir
    aside = list((tmp_path / "site" / "data").glob("database.before-restore-*.pgdump"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"PGDMP")
    assert main(["db", "current", *c]) == 0


def test_restore_on_a_new_server(
    postgres: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Disaster recovery: the backup goes into an empty database; a failed load changes nothing."""
    url, c = upgraded_site(postgres, tmp_path / "old")
    add_contacts(url, "Anna Berg")
    assert main(["backup", str(tmp_path / "backup"), *c]) == 0

    fresh = owned_database(postgres)
    new = config_for(tmp_path / "new", fresh)
    assert main(["restore", str(tmp_path / "backup"), *new]) == 0
    assert names(fresh) == {"Anna Berg"}
    assert main(["db", "current", *new]) == 0
    assert "up to date" in capsys.readouterr().out

    broken = tmp_path / "broken"
    broken.mkdir()
    for part in ("manifest.json",):
        (broken / part).write_bytes((tmp_path / "backup" / part).read_bytes())
    dump = (tmp_path / "backup" / "database.pgdump").read_bytes()
    (broken / "database.pgdump").write_bytes(dump[: len(dump) // 2])  # cut short
    assert main(["restore", str(broken), *new, "--force"]) == 1
    assert "failed" in capsys.readouterr().err
    assert names(fresh) == {"Anna Berg"}

    sqlite_site = config_for(tmp_path / "sqlite", "")
    assert main(["restore", str(tmp_path / "backup"), *sqlite_site]) == 1
    assert "holds a postgresql database" in capsys.readouterr().err
