"""What every ``crmcomms`` command shares: its error type and where the config file is."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from crmcomms.config import DEFAULT_CONFIG, Settings, load_settings

SYSTEM_CONFIG = Path("/etc/crmcomms/crmcomms.toml")
CONFIG_HELP = (
    "Configuration: --config FILE, else $CRMCOMMS_CONFIG, else /etc/crmcomms/crmcomms.toml, "
    "else config/crmcomms.example.toml in a source checkout. "
    "`crmcomms init-config FILE` writes a commented example."
)


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Command: TypeAlias = Callable[[argparse.Namespace, Settings], int]
Bind: TypeAlias = Callable[[Command], Callable[[argparse.Namespace], int]]
"""Turns a command that takes the settings into one that loads them (``cli.with_settings``)."""


class CliError(Exception):
    """A command failed; the message is printed as one line."""


def config_path(args: argparse.Namespace) -> Path:
    """The config file a command uses (see :data:`CONFIG_HELP`)."""
    if getattr(args, "config", None):
        return Path(args.config)
    if "CRMCOMMS_CONFIG" in os.environ:
        return Path(os.environ["CRMCOMMS_CONFIG"])
    for candidate in (SYSTEM_CONFIG, DEFAULT_CONFIG):
        if candidate.exists():
            return candidate
    raise CliError(
        "no configuration file: give --config FILE or set CRMCOMMS_CONFIG "
        "(`crmcomms init-config /etc/crmcomms/crmcomms.toml` writes a commented example)"
    )


def settings_of(args: argparse.Namespace) -> Settings:
    """The validated settings of the config file a command uses."""
    return load_settings(config_path(args))
