"""The daemon's own processes (issue 10): the mail parser processes end with the
daemon even after ``kill -9``, and SIGTERM after a parser process crashed is a clean
stop (exit 0, no traceback). A real daemon in a subprocess, with a mailbox."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.waits import wait_until

CLI = [sys.executable, "-m", "crmcomms"]
PASSWORD = "correct horse battery"


@dataclass
class Running:
    """A daemon subprocess, its URL and what it logged so far."""

    proc: asyncio.subprocess.Process
    url: str
    log: list[str]
    helpers: dict[int, int]  # pid -> parent pid of the processes it started, once looked at

    def look_at_helpers(self) -> dict[int, int]:
        """The daemon's processes now (the forkserver, its parser processes, the tracker)."""
        self.helpers.update(_descendants(self.proc.pid))
        return dict(self.helpers)

    async def rest_of_log(self) -> str:
        assert self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), 30)
        return "".join(self.log) + rest.decode()


def _config(tmp_path: Path) -> str:
    closed = free_port()  # nothing listens: the mailbox and outbox retry, the pool is up
    path = tmp_path / "crmcomms.toml"
    path.write_text(
        f'[general]\ndata_dir = "{tmp_path / "data"}"\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\n'
        '[[mailboxes]]\nname = "sales"\naddress = "sales@company.test"\n'
        f'imap_host = "127.0.0.1"\nimap_port = {closed}\nimap_tls = "none"\n'
        f'password = "x"\nsmtp_host = "127.0.0.1"\nsmtp_port = {closed}\nsmtp_tls = "none"\n'
    )
    return str(path)


async def _cli(*args: str, stdin: bytes = b"") -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode == 0, args


@asynccontextmanager
async def daemon(tmp_path: Path) -> AsyncIterator[Running]:
    """A migrated daemon with agent alice, listening; it and its helpers killed at the end."""
    config = _config(tmp_path)
    await _cli("db", "upgrade", "--config", config)
    add = ("agent", "add", "--config", config, "--name", "alice", "--extension", "101")
    await _cli(*add, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    proc = await asyncio.create_subprocess_exec(
        *CLI, "run", "--config", config,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    log: list[str] = []
    helpers: dict[int, int] = {}
    try:
        async with asyncio.timeout(30):
            while not (found := re.search(r"listening on (http://\S+)", "".join(log))):
                line = (await proc.stderr.readline()).decode()
                assert line, f"daemon exited early: {''.join(log)}"
                log.append(line)
        yield Running(proc, found.group(1), log, helpers)
    finally:
        for pid in {proc.pid, *helpers}:  # only what this daemon started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 30)


async def _use_the_parsers(url: str) -> None:
    """Send a mail through the API: it is composed in a parser process."""
    async with aiohttp.ClientSession() as http:
        login = {"username": "alice", "password": PASSWORD}
        async with http.post(f"{url}/api/login", json=login) as resp:
            token = (await resp.json())["token"]
        mail = {"to": ["petra@schulz.test"], "subject": "Hi", "text": "Hello"}
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{url}/api/emails", json=mail, headers=headers) as resp:
            assert resp.status == 202, await resp.text()


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies count as gone)."""
    out = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if entry.name.isdigit() and fields[0] != "Z":
            out[int(entry.name)] = int(fields[1])
    return out


def _descendants(pid: int) -> dict[int, int]:
    """pid -> parent pid of the processes below ``pid``."""
    parents, found, frontier = _parents(), {}, {pid}
    while frontier:
        below = {child: parent for child, parent in parents.items() if parent in frontier}
        found.update(below)
        frontier = set(below)
    return found


async def test_the_parser_processes_end_with_a_killed_daemon(tmp_path: Path) -> None:
    async with daemon(tmp_path) as running:
        await _use_the_parsers(running.url)
        helpers = running.look_at_helpers()
        workers = [pid for pid, parent in helpers.items() if parent != running.proc.pid]
        assert workers, helpers  # the forkserver's children: the parser processes

        running.proc.kill()  # not awaited: wait() would wait for the helpers' stderr

        gone = set(helpers) | {running.proc.pid}
        await wait_until(lambda: not gone & set(_parents()), 20, "the daemon's processes gone")


async def test_sigterm_after_a_parser_process_crashed_is_a_clean_stop(tmp_path: Path) -> None:
    async with daemon(tmp_path) as running:
        await _use_the_parsers(running.url)
        helpers = running.look_at_helpers()
        worker = next(pid for pid, parent in helpers.items() if parent != running.proc.pid)
        os.kill(worker, signal.SIGKILL)
        await wait_until(lambda: worker not in _parents(), 20, "the parser process gone")

        running.proc.send_signal(signal.SIGTERM)
        log = await running.rest_of_log()

        assert await asyncio.wait_for(running.proc.wait(), 30) == 0, log
        assert "CleanupError" not in log and "stopped" in log
        await wait_until(lambda: not set(helpers) & set(_parents()), 20, "the helpers gone")
