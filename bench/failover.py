"""Failover benchmark: kill -9 the AMI owner of three daemons, time until the next owner acts.

    python bench/failover.py --postgres postgresql+asyncpg://crm@127.0.0.1:PORT/ [--kills 20]

Three real daemons (``python -m crmcomms run``) share a fresh database on the given
PostgreSQL server and the AMI replay server of this process, which plays a recorded
call (fresh ids) every ``--every`` seconds to whoever is logged in. A supervisor
listens on ``/ws`` of every daemon. Each round: find the owner (``/readyz``,
``owner:ami``), ``kill -9`` it, and measure

- **login**: kill -> the next owner logged in to the PBX;
- **failover**: kill -> the first event a supervisor receives after that login
  (the first event handled by the new owner: its channel list or the next call);

then start the killed daemon again and wait until it serves before the next round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from bus import create_database, free_port, wait_up

from core.agents import add_agent
from core.db import create_engine, session_factory
from core.migrate import upgrade
from crmcomms.ami.replay import AmiReplayServer

CAPTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "ami" / "inbound-direct-answered.ami"


class Daemon:
    """One daemon process, started again with the same config after each kill."""

    def __init__(self, tmp: Path, n: int, url: str, ami_port: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp / f"d{n}.toml"
        self.log = tmp / f"d{n}.log"
        self.config.write_text(
            f'[general]\ndata_dir = "{tmp / f"d{n}"}"\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.port}\n[database]\nurl = "{url}"\n'
            f'[ami]\nenabled = true\nport = {ami_port}\nusername = "crm"\nsecret = "crmsecret"\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            command = [sys.executable, "-m", "crmcomms", "run", "--config", str(self.config)]
            self.proc = subprocess.Popen(command, stderr=out)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    async def owns_ami(self, http: aiohttp.ClientSession) -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{self.base}/readyz") as resp:
                owner = (await resp.json())["components"].get("owner:ami", {})
                return bool(owner.get("state") == "owner")
        return False


class Supervisors:
    """A supervisor's websocket on every daemon (reconnecting); when events arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.changed = asyncio.Event()

    async def follow(self, http: aiohttp.ClientSession, base: str) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, KeyError):
                body = {"username": "sue", "password": "sue-password"}
                async with http.post(f"{base}/api/login", json=body) as resp:
                    token = (await resp.json())["token"]
                async with http.ws_connect(f"{base}/ws?token={token}") as ws:
                    async for message in ws:
                        if orjson.loads(message.data)["type"] not in ("hello", "reload"):
                            self.arrivals.append(time.monotonic())
                            self.changed.set()
            await asyncio.sleep(0.2)  # that daemon is down: try again

    async def first_after(self, moment: float) -> float:
        while not any(t > moment for t in self.arrivals):
            self.changed.clear()
            await self.changed.wait()
        return min(t for t in self.arrivals if t > moment)


async def seed(url: str) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    async with session_factory(engine).begin() as session:
        await add_agent(session, "alice", "alice-password", ["101"])
        await add_agent(session, "sue", "sue-password", [], role="supervisor")
    await engine.dispose()


async def calls(pbx: AmiReplayServer, every: float) -> None:
    while True:
        await pbx.replay(CAPTURE, rewrite_ids=True, shift_timestamps=True)
        await asyncio.sleep(every)


async def owner_of(http: aiohttp.ClientSession, daemons: list[Daemon]) -> Daemon:
    async with asyncio.timeout(60):
        while True:
            owners = [d for d in daemons if await d.owns_ami(http)]
            if len(owners) == 1:
                return owners[0]
            await asyncio.sleep(0.1)


async def round_once(
    http: aiohttp.ClientSession, daemons: list[Daemon], pbx: AmiReplayServer, sups: Supervisors
) -> tuple[float, float]:
    owner = await owner_of(http, daemons)
    logins = pbx.logins
    killed = time.monotonic()
    owner.kill()
    await pbx.wait_logged_in(logins + 1, within=30)
    logged_in = time.monotonic()
    first = await asyncio.wait_for(sups.first_after(logged_in), 30)
    owner.start()
    await wait_up(http, owner.base)
    return logged_in - killed, first - killed


def summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"{label}: n={len(ordered)} min {ordered[0]:.2f} s, median "
        f"{statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s"
    )


async def main_async(args: argparse.Namespace) -> None:
    url = await create_database(args.postgres)
    await seed(url)
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    print(f"database {url}, {os.cpu_count()} cores, load {os.getloadavg()}")
    async with AmiReplayServer("crm", "crmsecret") as pbx:
        daemons = [Daemon(tmp, n, url, pbx.port) for n in range(3)]
        for daemon in daemons:
            daemon.start()
        sups = Supervisors()
        try:
            async with aiohttp.ClientSession() as http:
                for daemon in daemons:
                    await wait_up(http, daemon.base)
                tasks = [asyncio.create_task(sups.follow(http, d.base)) for d in daemons]
                tasks.append(asyncio.create_task(calls(pbx, args.every)))
                logins, failovers = [], []
                for n in range(args.kills):
                    login, failover = await round_once(http, daemons, pbx, sups)
                    logins.append(login)
                    failovers.append(failover)
                    print(
                        f"kill {n + 1}: logged in after {login:.2f} s, acted after {failover:.2f} s"
                    )
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for daemon in daemons:
                daemon.stop()
    print(summary("kill -> new owner logged in to the PBX", logins))
    print(summary("kill -> first event handled by the new owner", failovers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", required=True, help="server URL, database name left off")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.2, help="seconds between calls")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
