"""``crmcomms contacts import|export``.

An import prints a progress line on a terminal (rows/s, time left), then what
it did row by row (errors, warnings, duplicates) and a summary. It exits 0
even when rows had errors or warnings, unless ``--strict``; a file that cannot
be read at all always exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from core.importer import ImportOptions, ImportReport, Progress
from crmcomms.cli_common import Bind, Subcommands
from crmcomms.config import Settings


def _progress_line(progress: Progress) -> None:
    eta = progress.eta
    left = f", {eta:.0f} s left" if eta is not None and progress.done < progress.total else ""
    sys.stderr.write(
        f"\r{progress.done}/{progress.total} rows, {progress.rate:.0f} rows/s{left}   "
    )
    sys.stderr.flush()


SHOWN = 20
"""Lines per kind (errors, warnings, duplicates) without ``--verbose``."""


def print_report(report: ImportReport, name: str, verbose: bool = False) -> None:
    """Row by row (the first :data:`SHOWN` of each kind), then one summary line."""
    for kind, items in (
        ("error", report.errors),
        ("warning", report.warnings),
        ("duplicate", report.duplicates),
    ):
        shown = items if verbose else items[:SHOWN]
        for item in shown:
            print(f"row {item.row}: {kind}: {item.reason}")
        if len(items) > len(shown):
            print(f"... and {len(items) - len(shown)} more {kind}s (--verbose lists all)")
    verb = "would import" if report.dry_run else "imported"
    print(
        f"{name}: {report.rows} row(s): {verb} {report.created} new contact(s), "
        f"{'would update' if report.dry_run else 'updated'} {report.updated}, "
        f"{len(report.duplicates)} duplicate(s), {len(report.warnings)} warning(s), "
        f"{len(report.errors)} row(s) not imported"
        + (" (dry run: nothing stored)" if report.dry_run else "")
    )


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.admin import import_contacts_file

    path = Path(args.file)
    options = ImportOptions(settings.general.default_region, args.update, args.dry_run)
    on_progress = _progress_line if sys.stderr.isatty() else None
    report = asyncio.run(
        import_contacts_file(settings, path.read_bytes(), path.name, options, on_progress)
    )
    if on_progress is not None:
        sys.stderr.write("\n")
    print_report(report, args.file, args.verbose)
    return 1 if args.strict and not report.clean else 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.admin import export_contacts_file

    path = Path(args.file)
    fmt = "xlsx" if path.suffix.lower() == ".xlsx" else "csv"
    data, count = asyncio.run(export_contacts_file(settings, fmt))
    path.write_bytes(data)
    print(f"{path}: {count} contact(s) written")
    return 0


def add_parser(sub: Subcommands, config: argparse.ArgumentParser, bind: Bind) -> None:
    """The ``contacts`` command and its actions."""
    contacts = sub.add_parser("contacts", help="import and export contacts")
    actions = contacts.add_subparsers(dest="contacts_command", required=True, metavar="ACTION")
    imp = actions.add_parser(
        "import", parents=[config], help="import a CSV or XLSX file, reporting duplicates"
    )
    imp.add_argument("file", help="FILE.csv or FILE.xlsx")
    imp.add_argument("--dry-run", action="store_true", help="report only, store nothing")
    imp.add_argument(
        "--update",
        action="store_true",
        help="merge rows into the contact with the same e-mail (or name and number): "
        "fill empty fields, add numbers and addresses",
    )
    imp.add_argument(
        "--strict", action="store_true", help="exit 1 when a row had an error or a warning"
    )
    imp.add_argument("--verbose", action="store_true", help="list every row of the report")
    imp.set_defaults(func=bind(cmd_import))
    exp = actions.add_parser(
        "export", parents=[config], help="write every contact to FILE.csv or FILE.xlsx"
    )
    exp.add_argument("file", help="FILE.csv or FILE.xlsx (the import reads it back as it was)")
    exp.set_defaults(func=bind(cmd_export))
