"""``crmcomms contacts import|export``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

from crmcomms.config import Settings


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.admin import import_contacts_file

    path = Path(args.file)
    report = asyncio.run(import_contacts_file(settings, path.read_bytes(), path.name))
    print(f"imported {report.created} contact(s) from {args.file}")
    for dup in report.duplicates:
        print(f"duplicate row {dup.row}: {dup.reason}")
    for err in report.errors:
        print(f"error row {err.row}: {err.reason}")
    print(f"{len(report.duplicates)} duplicate(s), {len(report.errors)} row(s) with errors")
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config: argparse.ArgumentParser,
    bind: Callable[[Callable[[argparse.Namespace, Settings], int]], Callable[..., int]],
) -> None:
    """The ``contacts`` command and its actions."""
    contacts = sub.add_parser("contacts", help="manage contacts")
    actions = contacts.add_subparsers(dest="contacts_command", required=True, metavar="ACTION")
    imp = actions.add_parser(
        "import", parents=[config], help="import a CSV or XLSX file, reporting duplicates"
    )
    imp.add_argument("file", help="FILE.csv or FILE.xlsx")
    imp.set_defaults(func=bind(cmd_import))
