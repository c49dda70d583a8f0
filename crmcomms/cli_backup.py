"""``crmcomms backup PATH`` and ``crmcomms restore PATH``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from crmcomms.backup import BackupError, make_backup, restore_backup
from crmcomms.cli_common import Bind, CliError, Subcommands
from crmcomms.config import Settings


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.admin import database_revisions

    revision, _head = asyncio.run(database_revisions(settings))
    try:
        manifest = make_backup(settings, Path(args.path), revision)
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    print(
        f"backup of the {manifest.database} database (revision {revision}) and "
        f"{manifest.blobs} attachment file(s) in {args.path}"
    )
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.admin import database_revisions

    try:
        manifest = restore_backup(settings, Path(args.path), args.force)
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    current, head = asyncio.run(database_revisions(settings))
    print(f"restored the backup of {manifest.created_at} (crmcomms {manifest.version})")
    if current != head:
        print(f"the database is at revision {current}: run `crmcomms db upgrade` (to {head})")
    return 0


def add_parsers(sub: Subcommands, config: argparse.ArgumentParser, bind: Bind) -> None:
    """The ``backup`` and ``restore`` commands."""
    backup = sub.add_parser(
        "backup",
        parents=[config],
        help="copy the database (online, consistent) and the attachments into a new directory",
    )
    backup.add_argument("path", metavar="PATH", help="a new (or empty) directory")
    backup.set_defaults(func=bind(cmd_backup))
    restore = sub.add_parser(
        "restore", parents=[config], help="put a backup in place (the daemon must be stopped)"
    )
    restore.add_argument("path", metavar="PATH", help="a directory made by `crmcomms backup`")
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace an existing database (SQLite: the file, PostgreSQL: a pg_dump kept aside)",
    )
    restore.set_defaults(func=bind(cmd_restore))
