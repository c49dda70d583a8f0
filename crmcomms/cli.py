"""The ``crmcomms`` command line: run, check-config, init-config, db, agent, contacts, demo.

Every failure is one clear line on stderr and a non-zero exit status. The
commands of a topic live in their own module (``cli_agents``, ``cli_contacts``,
``cli_backup``); this one builds the parser and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from core.errors import CoreError
from crmcomms import cli_agents, cli_backup, cli_contacts
from crmcomms.cli_common import (
    CONFIG_HELP,
    CliError,
    Command,
    Subcommands,
    config_path,
    settings_of,
)
from crmcomms.config import ConfigError, Settings, load_settings
from crmcomms.errors import StartupError
from crmcomms.runtime import serve, settle_heap

EXAMPLE_CONFIG = Path(__file__).parent / "crmcomms.example.toml"


def version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("crmcomms")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def with_settings(command: Command) -> Callable[[argparse.Namespace], int]:
    """A command that is handed the settings of its config file."""
    return lambda args: command(args, settings_of(args))


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.app import build_app, run_until_signalled
    from crmcomms.logs import configure_logging

    configure_logging(settings.general.log_level, settings.general.log_format)
    app = build_app(settings)
    serve(run_until_signalled(app, on_ready=lambda _url: settle_heap()))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from crmcomms.checks import run_checks

    path = config_path(args)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"FAIL config: {exc}")
        return 1
    print(f"ok   config: {path}")
    problems = asyncio.run(run_checks(settings, print))
    return 1 if problems else 0


def cmd_init_config(args: argparse.Namespace) -> int:
    """Write the commented example configuration to a new file."""
    target = Path(args.path)
    if target.exists() and not args.force:
        raise CliError(f"{target} exists (--force overwrites it)")
    data_dir = Path(args.data_dir) if args.data_dir else target.parent / "data"
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text = re.sub(
        r'^data_dir = ".*"$',
        lambda _m: f"data_dir = {_toml_string(str(data_dir.absolute()))}",
        text,
        count=1,
        flags=re.MULTILINE,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o640)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} (data_dir = {data_dir.absolute()}); edit it, then:")
    print(f"  crmcomms check-config --config {target}")
    return 0


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.admin import upgrade_database

    revision = asyncio.run(upgrade_database(settings))
    print(f"database {_where(settings)} is at revision {revision}")
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    """The schema revision of the database, and whether it needs `db upgrade`."""
    from crmcomms.admin import database_revisions

    current, head = asyncio.run(database_revisions(settings))
    state = "up to date" if current == head else f"needs `crmcomms db upgrade` to {head}"
    print(f"database {_where(settings)} is at revision {current or 'nothing'}: {state}")
    return 0 if current == head else 1


def _where(settings: Settings) -> str:
    return settings.database_url.split("@")[-1]


def cmd_demo(args: argparse.Namespace) -> int:
    from crmcomms.demo import run_demo

    serve(run_demo(port=args.port, speed=args.speed))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmcomms",
        description="Asterisk screen pops, call log and mailbox sync for a small CRM.",
        epilog=CONFIG_HELP,
    )
    parser.add_argument("--version", action="version", version=f"crmcomms {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", metavar="FILE", help="TOML configuration file")

    run = sub.add_parser("run", parents=[config], help="run the daemon in the foreground")
    run.set_defaults(func=with_settings(cmd_run))
    check = sub.add_parser(
        "check-config",
        parents=[config],
        help="validate the configuration and try the database, AMI, IMAP and SMTP",
    )
    check.set_defaults(func=cmd_check_config)
    _init_config_parser(sub)
    _db_parser(sub, config)
    cli_agents.add_parser(sub, config, with_settings)
    cli_contacts.add_parser(sub, config, with_settings)
    cli_backup.add_parsers(sub, config, with_settings)
    demo = sub.add_parser(
        "demo",
        help="DEMO ONLY: temporary database, demo logins and a replayed PBX (no real Asterisk)",
    )
    demo.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    demo.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    demo.set_defaults(func=cmd_demo)
    return parser


def _init_config_parser(sub: Subcommands) -> None:
    init = sub.add_parser("init-config", help="write the commented example configuration to PATH")
    init.add_argument("path", metavar="PATH", help="e.g. /etc/crmcomms/crmcomms.toml")
    init.add_argument(
        "--data-dir", help="general.data_dir to write (default: PATH's directory/data)"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init_config)


def _db_parser(sub: Subcommands, config: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", parents=[config], help="apply the schema migrations")
    up.set_defaults(func=with_settings(cmd_db_upgrade))
    current = db_sub.add_parser(
        "current", parents=[config], help="the schema revision (exit 1 if an upgrade is due)"
    )
    current.set_defaults(func=with_settings(cmd_db_current))


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
