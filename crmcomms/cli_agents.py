"""``crmcomms agent add|list|show|set|password|disable|enable|remove``.

An agent is named by login name or id. Every change prints the agent as it is
afterwards; errors name the field (``extension: 101 already belongs to agent bob``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from core.agent_admin import (
    AgentChanges,
    AgentRecord,
    change_agent,
    list_agents,
    remove_agent,
    set_disabled,
    set_password,
    show_agent,
)
from core.agents import ROLES
from crmcomms.cli_common import Bind, CliError, Subcommands
from crmcomms.config import Settings

Action = Callable[[AsyncSession], Awaitable[Any]]


def read_password(from_stdin: bool) -> str:
    """The password from stdin (one line), or typed twice on a terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CliError("give the password on stdin with --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise CliError("the passwords differ")
    return first


def describe(agent: AgentRecord) -> str:
    """One line about an agent."""
    exts = ", ".join(agent.extensions) or "no extension"
    state = " DISABLED" if agent.disabled else ""
    email = f" <{agent.email}>" if agent.email else ""
    return f"{agent.name} (id {agent.id}, {agent.role}, {exts}){email}{state}"


def _run(settings: Settings, action: Action) -> Any:
    from crmcomms.admin import in_transaction

    return asyncio.run(in_transaction(settings, action))


def _print_json(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    agents: list[AgentRecord] = _run(settings, list_agents)
    if args.json:
        _print_json([a.to_json() for a in agents])
        return 0
    print(f"{'ID':>4}  {'NAME':<20} {'ROLE':<10} {'STATE':<8} {'EXTENSIONS':<16} EMAIL")
    for a in agents:
        state = "disabled" if a.disabled else "enabled"
        exts = ",".join(a.extensions) or "-"
        print(f"{a.id:>4}  {a.name:<20} {a.role:<10} {state:<8} {exts:<16} {a.email or '-'}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    agent: AgentRecord = _run(settings, lambda s: show_agent(s, args.agent))
    if args.json:
        _print_json(agent.to_json())
    else:
        for key, value in agent.to_json().items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key + ':':<12} {shown}")
    return 0


def cmd_set(args: argparse.Namespace, settings: Settings) -> int:
    extensions = [] if args.no_extensions else (args.extension or None)
    changes = AgentChanges(args.name, args.email, args.role, extensions)
    pattern = settings.ami.extension_pattern
    agent = _run(settings, lambda s: change_agent(s, args.agent, changes, pattern))
    print(f"agent {describe(agent)} changed")
    return 0


def cmd_password(args: argparse.Namespace, settings: Settings) -> int:
    password = read_password(args.password_stdin)
    agent = _run(settings, lambda s: set_password(s, args.agent, password))
    print(f"password of {describe(agent)} changed; its logins are signed out")
    return 0


def cmd_disable(args: argparse.Namespace, settings: Settings) -> int:
    agent = _run(settings, lambda s: set_disabled(s, args.agent, True))
    print(f"agent {describe(agent)}: cannot log in any more, signed out")
    return 0


def cmd_enable(args: argparse.Namespace, settings: Settings) -> int:
    agent = _run(settings, lambda s: set_disabled(s, args.agent, False))
    print(f"agent {describe(agent)} enabled")
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    agent = _run(settings, lambda s: remove_agent(s, args.agent))
    print(f"agent {describe(agent)} removed")
    return 0


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from crmcomms.admin import add_agent_from_cli

    password = read_password(args.password_stdin)
    identity = asyncio.run(
        add_agent_from_cli(settings, args.name, password, args.extension, args.email, args.role)
    )
    exts = ", ".join(sorted(identity.extensions)) or "no extension"
    print(f"agent {identity.name} (id {identity.id}, {identity.role}, {exts}) created")
    return 0


def add_parser(sub: Subcommands, config: argparse.ArgumentParser, bind: Bind) -> None:
    """The ``agent`` command and its actions; ``bind`` loads the settings for an action."""
    agent = sub.add_parser("agent", help="manage agents (logins, roles, extensions)")
    actions = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    one = argparse.ArgumentParser(add_help=False, parents=[config])
    one.add_argument("agent", help="login name or id")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")
    stdin = argparse.ArgumentParser(add_help=False)
    stdin.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    add = actions.add_parser("add", parents=[config, stdin], help="create an agent login")
    add.add_argument("--name", required=True, help="login name")
    _extension_option(add)
    add.add_argument("--email", default="", help="e-mail address")
    add.add_argument("--role", default="agent", choices=ROLES)
    add.set_defaults(func=bind(cmd_add))

    simple: list[tuple[str, str, Callable[[argparse.Namespace, Settings], int], list[Any]]] = [
        ("list", "list every agent", cmd_list, [config, as_json]),
        ("show", "show one agent", cmd_show, [one, as_json]),
        ("password", "set a new password (signs the agent out)", cmd_password, [one, stdin]),
        ("disable", "stop an agent from logging in (signs it out)", cmd_disable, [one]),
        ("enable", "let a disabled agent log in again", cmd_enable, [one]),
        ("remove", "delete an agent (its notes stay)", cmd_remove, [one]),
    ]
    for name, help_text, func, parents in simple:
        actions.add_parser(name, parents=parents, help=help_text).set_defaults(func=bind(func))

    change = actions.add_parser("set", parents=[one], help="change name, e-mail, role, extensions")
    change.add_argument("--name", help="new login name")
    change.add_argument("--email", help="e-mail address ('' to clear)")
    change.add_argument("--role", choices=ROLES)
    _extension_option(change, " (replaces all; repeatable)")
    change.add_argument("--no-extensions", action="store_true", help="remove every extension")
    change.set_defaults(func=bind(cmd_set))


def _extension_option(parser: argparse.ArgumentParser, more: str = " (repeatable)") -> None:
    parser.add_argument("--extension", action="append", default=[], help="phone extension" + more)
