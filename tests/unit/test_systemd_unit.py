"""The systemd unit: hardened as issue 10 asks, and valid for systemd-analyze verify."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "crmcomms.service"


def directives() -> dict[str, str]:
    """``Key=value`` lines of the unit (the last one wins, as in systemd)."""
    lines = UNIT.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Za-z]+=", line))


def test_the_unit_is_hardened() -> None:
    unit = directives()

    assert unit["UMask"] == "0077"
    assert unit["StateDirectoryMode"] == "0700"
    assert int(unit["LimitNOFILE"]) >= 4096 + 128
    for key in ("PrivateDevices", "ProtectClock", "ProtectKernelLogs", "ProtectHostname",
                "RestrictSUIDSGID", "NoNewPrivileges", "ProtectHome"):  # fmt: skip
        assert unit[key] == "yes", key
    assert unit["ProtectProc"] == "invisible"
    assert unit["ProtectSystem"] == "strict"
    assert unit["SystemCallFilter"] == "@system-service"
    assert re.fullmatch(r"\d+[KMG]", unit["MemoryMax"])
    assert unit["CapabilityBoundingSet"] == ""


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's program exists: point it at one that does
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text(), flags=re.M)
    copy = tmp_path / UNIT.name
    copy.write_text(text)

    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
