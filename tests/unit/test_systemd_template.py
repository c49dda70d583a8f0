"""The template unit for several instances on one host: crmcomms.service but for its
description and config path, and valid for systemd-analyze verify as an instance."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "systemd"
SINGLE, TEMPLATE = UNITS / "crmcomms.service", UNITS / "crmcomms@.service"


def directives(unit: Path) -> dict[str, str]:
    """``Key=value`` lines (the last one wins, as in systemd)."""
    lines = unit.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Za-z]+=", line))


def test_the_template_is_the_single_unit_per_instance() -> None:
    single, template = directives(SINGLE), directives(TEMPLATE)

    assert template.pop("ExecStart") == (
        "/opt/crmcomms/bin/crmcomms run --config /etc/crmcomms/%i.toml"
    )
    assert "%i" in template.pop("Description")
    del single["ExecStart"], single["Description"]
    assert template == single  # the same hardening, limits and restarts


def test_systemd_analyze_verifies_an_instance(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    program = f"ExecStart={sys.executable}"  # verify wants ExecStart's program to exist
    text = re.sub(r"^ExecStart=\S+", program, TEMPLATE.read_text(), flags=re.M)
    (tmp_path / TEMPLATE.name).write_text(text)
    instance = tmp_path / "crmcomms@a.service"
    instance.symlink_to(tmp_path / TEMPLATE.name)

    done = subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert "crmcomms@" not in done.stderr, done.stderr
