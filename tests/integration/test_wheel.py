"""The wheel is a self-contained program: built, installed into a fresh venv, run outside the repo.

The wheel is built from a copy of the source (the shared working tree gets no
build/ directory) with pip's build isolation. The fresh venv gets the wheel
itself from pip and its dependencies from this test environment's
site-packages through a ``.pth`` file (no network, no index needed for them;
the editable install of the repo is *not* visible there, as ``.pth`` files of
an added directory are not processed).
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
SOURCE_IGNORE = shutil.ignore_patterns(
    ".*", "__pycache__", "*.egg-info", "build", "dist", "data", "tests", "bench", "docs"
)


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORE)  # symlinks copied as files
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp / "dist", source,
         cwd=tmp)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("crmcomms-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", wheel, cwd=tmp)  # fmt: skip
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp)
    deps = [sysconfig.get_path("purelib"), *site.getsitepackages()]
    (Path(purelib.strip()) / "test-deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    return venv


def test_wheel_installs_and_runs_outside_the_repo(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    crmcomms = venv / "bin" / "crmcomms"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _run(crmcomms, "--version", cwd=work).strip() == f"crmcomms {version}"
    where = _run(
        venv / "bin" / "python", "-c", "import crmcomms; print(crmcomms.__file__)", cwd=work
    )
    assert where.startswith(str(venv)), where
    _run(crmcomms, "init-config", "x.toml", cwd=work)
    assert "[ami]" in (work / "x.toml").read_text()
    _run(crmcomms, "db", "upgrade", "--config", "x.toml", cwd=work)
    out = _run(crmcomms, "check-config", "--config", "x.toml", cwd=work)
    assert "ok   database" in out, out
    assert (work / "data" / "crmcomms.sqlite3").exists()
