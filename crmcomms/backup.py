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
answers. Call recordings live on the PBX (``ami.recordings_dir``) and are not
part of a backup.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

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


def _pg_tool(settings: Settings, name: str, options: list[str], instead: str) -> None:
    """Run pg_dump/pg_restore on the configured database (password via PGPASSWORD, not argv)."""
    tool = shutil.which(name)
    if tool is None:
        raise BackupError(f"{name} not found (apt-get install postgresql-client); or {instead}")
    url = make_url(settings.database_url)
    connect = ["-h", url.host or "localhost", "-p", str(url.port or 5432)]
    connect += ["-U", url.username or "", "-d", url.database or ""]
    env = {**os.environ, "PGPASSWORD": url.password} if url.password else dict(os.environ)
    done = subprocess.run(
        [tool, *connect, *options], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupError(f"{name} failed: {' '.join(done.stderr.split())}")


def _pg_dump(settings: Settings, target: Path) -> None:
    make_private_file(target)
    instead = "back up yourself: pg_dump --format=custom --file crmcomms.pgdump DBNAME"
    _pg_tool(settings, "pg_dump", ["--format=custom", "--no-owner", "--file", str(target)], instead)


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
        _pg_restore(settings, source / PG_DUMP)
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


def _pg_restore(settings: Settings, dump: Path) -> None:
    instead = f"restore yourself: pg_restore --clean --if-exists --no-owner -d DBNAME {dump}"
    _pg_tool(settings, "pg_restore", ["--clean", "--if-exists", "--no-owner", str(dump)], instead)
