"""Backups and restores of the data dir: the database and the attachment store.

A backup is a directory:

- ``manifest.json``: crmcomms version, schema revision, database kind, time;
- ``crmcomms.sqlite3``: an online copy made with SQLite's backup API (one read
  transaction: a consistent snapshot while the daemon keeps writing; WAL lets
  writers go on meanwhile), or ``database.pgdump`` from ``pg_dump --format=custom``
  on PostgreSQL;
- ``blobs/``: the attachment files, copied *after* the database snapshot, so
  every attachment the snapshot refers to is there (the files never change once
  written; an extra one is harmless).

A restore needs the daemon stopped: it refuses while the configured HTTP port
answers. It replaces an existing database only when forced, keeping the old one
aside (SQLite: the renamed file; PostgreSQL: a ``pg_dump`` in the data dir). On
PostgreSQL the dump is loaded in one transaction that first empties the schema,
so a failed restore changes nothing and a restore over a newer schema (after a
failed upgrade) leaves none of its tables behind; owners and grants are not
restored: everything belongs to the configured user.

Call recordings live on the PBX (``ami.recordings_dir``) and are not part of a
backup.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from core.files import make_private_dir, make_private_file
from crmcomms.config import Settings

MANIFEST = "manifest.json"
SQLITE_FILE = "crmcomms.sqlite3"
PG_DUMP = "database.pgdump"


class BackupError(Exception):
    """A backup or restore cannot be made; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds."""

    version: str
    revision: str | None
    database: str
    created_at: str
    blobs: int

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "version": self.version,
            "revision": self.revision,
            "database": self.database,
            "created_at": self.created_at,
            "blobs": self.blobs,
        }


def _kind(settings: Settings) -> str:
    return (
        "sqlite" if make_url(settings.database_url).get_backend_name() == "sqlite" else "postgresql"
    )


def _sqlite_path(settings: Settings) -> Path:
    return Path(make_url(settings.database_url).database or "")


def make_backup(settings: Settings, target: Path, revision: str | None) -> Manifest:
    """Write a backup of the configured database and blobs into the new directory ``target``."""
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} exists and is not empty: give a new directory")
    make_private_dir(target)
    if _kind(settings) == "sqlite":
        _copy_sqlite(_sqlite_path(settings), target / SQLITE_FILE)
    else:
        _pg_dump(settings, target / PG_DUMP)
    blobs = _copy_blobs(settings.general.data_dir / "blobs", target / "blobs")
    manifest = Manifest(
        version=_version(),
        revision=revision,
        database=_kind(settings),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        blobs=blobs,
    )
    (target / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def _version() -> str:
    try:
        return metadata.version("crmcomms")
    except metadata.PackageNotFoundError:
        return "unknown"


def _copy_sqlite(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"no database at {source}: nothing to back up")
    make_private_file(target)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    with closing(src), closing(sqlite3.connect(target)) as dst:
        src.backup(dst)  # all pages in one step: one read transaction, one snapshot


def _copy_blobs(source: Path, target: Path) -> int:
    if not source.is_dir():
        return 0
    count = 0
    for path in source.rglob("*"):
        if path.is_file() and not path.name.startswith(".tmp-"):
            dest = target / path.relative_to(source)
            make_private_dir(dest.parent)
            if not dest.exists():
                shutil.copy2(path, dest)
            count += 1
    return count


def _pg_command(settings: Settings, name: str, instead: str) -> tuple[list[str], dict[str, str]]:
    """A PostgreSQL client tool's command line for the configured database, and its
    environment (the password goes in PGPASSWORD, not in argv)."""
    tool = shutil.which(name)
    if tool is None:
        raise BackupError(f"{name} not found (apt-get install postgresql-client); or {instead}")
    url = make_url(settings.database_url)
    command = [tool, "-h", url.host or "localhost", "-p", str(url.port or 5432)]
    if url.username:
        command += ["-U", url.username]
    command += ["-d", url.database or ""]
    env = {**os.environ, "PGPASSWORD": url.password} if url.password else dict(os.environ)
    return command, env


def _pg_run(settings: Settings, name: str, options: list[str], instead: str) -> str:
    """Run pg_dump/psql on the configured database; its output."""
    command, env = _pg_command(settings, name, instead)
    done = subprocess.run(
        [*command, *options], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupError(f"{name} failed: {' '.join(done.stderr.split())}")
    return done.stdout


def _pg_dump(settings: Settings, target: Path) -> None:
    make_private_file(target)
    instead = "back up yourself: pg_dump --format=custom --file crmcomms.pgdump DBNAME"
    _pg_run(settings, "pg_dump", ["--format=custom", "--no-owner", "--file", str(target)], instead)


def read_manifest(source: Path) -> Manifest:
    """The manifest of the backup in ``source``."""
    try:
        data = json.loads((source / MANIFEST).read_text())
        return Manifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"{source} is no crmcomms backup ({MANIFEST}: {exc})") from exc


def daemon_answers(settings: Settings) -> bool:
    """Something accepts connections on the configured HTTP address (the daemon, surely)."""
    if not settings.http.port:
        return False
    try:
        with socket.create_connection((settings.http.host, settings.http.port), timeout=1):
            return True
    except OSError:
        return False


def restore_backup(settings: Settings, source: Path, force: bool) -> Manifest:
    """Put the backup in ``source`` in place of the configured database and blobs."""
    manifest = read_manifest(source)
    if manifest.database != _kind(settings):
        raise BackupError(
            f"the backup holds a {manifest.database} database, the config uses {_kind(settings)}"
        )
    if daemon_answers(settings):
        raise BackupError(
            f"the daemon answers on {settings.http.host}:{settings.http.port}: stop it first "
            "(systemctl stop crmcomms)"
        )
    if manifest.database == "sqlite":
        _restore_sqlite(source / SQLITE_FILE, _sqlite_path(settings), force)
    else:
        _pg_restore(settings, source / PG_DUMP, force)
    _copy_blobs(source / "blobs", settings.general.data_dir / "blobs")
    return manifest


def _restore_sqlite(backup: Path, target: Path, force: bool) -> None:
    if target.exists():
        if not force:
            raise BackupError(f"{target} exists: --force replaces it (the old one is kept)")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{target}{suffix}")
            if old.exists():
                old.rename(f"{target}.before-restore-{stamp}{suffix}")
    make_private_dir(target.parent)
    make_private_file(target)
    src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    with closing(src), closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")


def _pg_restore(settings: Settings, dump: Path, force: bool) -> None:
    """Replace the configured database's tables by the dump's, in one transaction."""
    if _pg_has_tables(settings):
        if not force:
            raise BackupError(
                f"the database {make_url(settings.database_url).database} has tables: --force "
                "replaces them (a pg_dump of them is kept in the data dir)"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        make_private_dir(settings.general.data_dir)
        _pg_dump(settings, settings.general.data_dir / f"database.before-restore-{stamp}.pgdump")
    _pg_load(settings, dump)


def _pg_has_tables(settings: Settings) -> bool:
    query = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    instead = "restore yourself: pg_restore --clean --if-exists --no-owner -d DBNAME DUMP"
    return int(_pg_run(settings, "psql", ["-X", "-tA", "-c", query], instead)) > 0


def _pg_load(settings: Settings, dump: Path) -> None:
    """pg_restore's script streamed into one psql transaction that first empties the
    schema: all or nothing, and no table of a newer schema left behind."""
    instead = f"restore yourself: pg_restore --clean --if-exists --no-owner -d DBNAME {dump}"
    script, _ = _pg_command(settings, "pg_restore", instead)
    psql, env = _pg_command(settings, "psql", instead)
    script = [script[0], "--no-owner", "--no-privileges", "--no-comments", "--file=-", str(dump)]
    load = [*psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-c", _PG_EMPTY, "-f", "-"]
    with tempfile.TemporaryFile() as read_errors, tempfile.TemporaryFile() as load_errors:
        reader = subprocess.Popen(script, stdout=subprocess.PIPE, stderr=read_errors)
        loader = subprocess.Popen(
            load, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=load_errors, env=env
        )
        assert reader.stdout is not None and loader.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # psql stopped at an error: see below
            shutil.copyfileobj(reader.stdout, loader.stdin)
        reader.stdout.close()
        read_failed = reader.wait() != 0
        if read_failed:
            loader.kill()  # before psql sees the end of its input and commits: rolled back
            loader.wait()
        with contextlib.suppress(BrokenPipeError):
            loader.stdin.close()
        if read_failed:
            raise BackupError(f"pg_restore failed, the database is unchanged: {_text(read_errors)}")
        if loader.wait() != 0:
            raise BackupError(f"restore failed, the database is unchanged: {_text(load_errors)}")


def _text(output: IO[bytes]) -> str:
    output.seek(0)
    return " ".join(output.read().decode(errors="replace").split())


#: Drops what the public schema holds, extension members apart, so that a restore
#: (after a failed upgrade, say) leaves no table or function the backup does not have.
_PG_EMPTY = """
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
             WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
           c.oid::regclass::text AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY c.relkind = 'S'
  LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', r.kind, r.name);
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure::text AS name
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.name);
  END LOOP;
END $$;
"""
