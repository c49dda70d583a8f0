"""The ``crmcomms`` command line: run, check-config, db upgrade, agent add, contacts import, demo.

Every failure is one clear line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from core.errors import CoreError
from crmcomms.config import DEFAULT_CONFIG, ConfigError, Settings, load_settings
from crmcomms.errors import StartupError
from crmcomms.runtime import serve, settle_heap

EPILOG = "Configuration: --config FILE, else $CRMCOMMS_CONFIG, else config/crmcomms.example.toml."


class CliError(Exception):
    """A command failed; the message is printed as one line."""


def _config_path(args: argparse.Namespace) -> Path:
    if args.config:
        return Path(args.config)
    return Path(os.environ.get("CRMCOMMS_CONFIG", str(DEFAULT_CONFIG)))


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(_config_path(args))


def cmd_run(args: argparse.Namespace) -> int:
    from crmcomms.app import build_app, run_until_signalled
    from crmcomms.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.general.log_level)
    app = build_app(settings)
    serve(run_until_signalled(app, on_ready=lambda _url: settle_heap()))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from crmcomms.checks import run_checks

    path = _config_path(args)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"FAIL config: {exc}")
        return 1
    print(f"ok   config: {path}")
    problems = asyncio.run(run_checks(settings, print))
    return 1 if problems else 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from crmcomms.admin import upgrade_database

    settings = _settings(args)
    revision = asyncio.run(upgrade_database(settings))
    print(f"database {settings.database_url.split('@')[-1]} is at revision {revision}")
    return 0


def cmd_agent_add(args: argparse.Namespace) -> int:
    from crmcomms.admin import add_agent_from_cli

    if not args.password_stdin:
        raise CliError("give the password on stdin with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    identity = asyncio.run(
        add_agent_from_cli(
            _settings(args), args.name, password, args.extension, args.email, args.role
        )
    )
    exts = ", ".join(sorted(identity.extensions)) or "no extension"
    print(f"agent {identity.name} (id {identity.id}, {identity.role}, {exts}) created")
    return 0


def cmd_contacts_import(args: argparse.Namespace) -> int:
    from crmcomms.admin import import_contacts_file

    path = Path(args.file)
    report = asyncio.run(import_contacts_file(_settings(args), path.read_bytes(), path.name))
    print(f"imported {report.created} contact(s) from {args.file}")
    for dup in report.duplicates:
        print(f"duplicate row {dup.row}: {dup.reason}")
    for err in report.errors:
        print(f"error row {err.row}: {err.reason}")
    print(f"{len(report.duplicates)} duplicate(s), {len(report.errors)} row(s) with errors")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from crmcomms.demo import run_demo

    serve(run_demo(port=args.port, speed=args.speed))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmcomms",
        description="Asterisk screen pops, call log and mailbox sync for a small CRM.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", metavar="FILE", help="TOML configuration file")

    run = sub.add_parser("run", parents=[config], help="run the daemon in the foreground")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser(
        "check-config",
        parents=[config],
        help="validate the configuration and try the database, AMI, IMAP and SMTP",
    )
    check.set_defaults(func=cmd_check_config)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", parents=[config], help="apply the schema migrations")
    up.set_defaults(func=cmd_db_upgrade)
    _agent_parser(sub, config)
    _contacts_parser(sub, config)
    demo = sub.add_parser(
        "demo",
        help="DEMO ONLY: temporary database, demo logins and a replayed PBX (no real Asterisk)",
    )
    demo.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    demo.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    demo.set_defaults(func=cmd_demo)
    return parser


def _agent_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser
) -> None:
    agent = sub.add_parser("agent", help="manage agents")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    add = agent_sub.add_parser("add", parents=[config], help="create an agent login")
    add.add_argument("--name", required=True, help="login name")
    add.add_argument(
        "--extension", action="append", default=[], help="phone extension (repeatable)"
    )
    add.add_argument("--email", default="", help="e-mail address")
    add.add_argument("--role", default="agent", choices=("agent", "supervisor", "admin"))
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(func=cmd_agent_add)


def _contacts_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser
) -> None:
    contacts = sub.add_parser("contacts", help="manage contacts")
    contacts_sub = contacts.add_subparsers(dest="contacts_command", required=True, metavar="ACTION")
    imp = contacts_sub.add_parser(
        "import", parents=[config], help="import a CSV or XLSX file, reporting duplicates"
    )
    imp.add_argument("file", help="FILE.csv or FILE.xlsx")
    imp.set_defaults(func=cmd_contacts_import)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crmcomms`` command."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, CliError, CoreError, StartupError, OSError) as exc:
        print(f"crmcomms: {_one_line(exc)}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(
            f"crmcomms: database error: {_one_line(getattr(exc, 'orig', None) or exc)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
