"""The installed command: db upgrade, agent add, check-config, run until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp

CLI = [sys.executable, "-m", "crmcomms"]


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "crmcomms.toml"
    data = tmp_path / "data"
    path.write_text(
        f'[general]\ndata_dir = "{data}"\n[http]\nhost = "127.0.0.1"\nport = 0\n{extra}'
    )
    return path


async def _cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_refuses_unmigrated_database(tmp_path: Path) -> None:
    code, _, err = await _cli("run", "--config", str(_config(tmp_path)))
    assert code == 1
    assert "run `crmcomms db upgrade`" in err and "Traceback" not in err


async def test_bad_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    code, _, err = await _cli("run", "--config", str(_config(tmp_path, "[ami]\nprot = 1\n")))
    assert code == 1
    assert err.strip() == "crmcomms: ami.prot: unknown key"


async def test_check_config(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    code, out, _ = await _cli("check-config", "--config", config)
    assert code == 1 and "FAIL database: schema at nothing" in out
    assert (await _cli("db", "upgrade", "--config", config))[0] == 0
    code, out, _ = await _cli("check-config", "--config", config)
    assert code == 0, out
    assert "ok   database" in out


async def test_agent_add_needs_password_on_stdin(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    await _cli("db", "upgrade", "--config", config)
    args = ("agent", "add", "--config", config, "--name", "alice", "--extension", "101")
    code, _, err = await _cli(*args)
    assert code == 1 and "--password-stdin" in err
    code, out, _ = await _cli(*args, "--password-stdin", stdin=b"correct horse\n")
    assert code == 0 and "agent alice" in out
    code, _, err = await _cli(*args, "--password-stdin", stdin=b"correct horse\n")
    assert code == 1 and "name: 'alice' is already the name of agent" in err


async def test_serves_healthz_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    assert (await _cli("db", "upgrade", "--config", config))[0] == 0
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        "--config",
        config,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not (match := re.search(r"listening on http://127.0.0.1:(\d+)", "".join(lines))):
            line = (await proc.stderr.readline()).decode()
            assert line, f"daemon exited early: {''.join(lines)}"
            lines.append(line)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{match.group(1)}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["components"]["database"]["state"] == "ok"
    proc.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(proc.stderr.read(), 30)
    assert await proc.wait() == 0
    log = "".join(lines) + rest.decode()
    assert "Traceback" not in log and "stopped" in log
    assert "Task was destroyed" not in log and "Unclosed" not in log


async def test_tells_systemd_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    assert (await _cli("db", "upgrade", "--config", config))[0] == 0
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    proc = await asyncio.create_subprocess_exec(
        *CLI, "run", "--config", config, stderr=asyncio.subprocess.DEVNULL, env=env
    )
    loop = asyncio.get_running_loop()
    received: list[str] = []

    async def until(state: str) -> None:
        async with asyncio.timeout(30):
            while state not in received:
                received.append((await loop.sock_recv(notify, 256)).decode())

    try:
        await until("READY=1")
        await until("WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        await until("STOPPING=1")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        notify.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
