"""How long the AMI link is blind after a fault: outage -> logged in, black hole -> noticed.

    python bench/reconnect.py [--outages 1,5,20] [--rounds 5] [--silent-rounds 6] [--seed 1]

The real :class:`~crmcomms.ami.client.AmiClient` with the default ``[ami]`` settings
(ping 5 s / 3 s, reconnect_max_delay 30 s) and its real jitter, against the real
:class:`~crmcomms.ami.replay.AmiReplayServer` on 127.0.0.1, in one process.

Outage: the client is logged in (and has been for 11 s, a healthy link), the server
stops (every connection cut, the port closed: Asterisk restarting), stays down for
the given seconds, then listens again on the same port. Measured: from the port
listening again to the client logged in (``connected`` flips).

Black hole: the server stops answering anything (``pause_pings``: the connection
stays open, nothing arrives, as behind a dead switch) at a random moment of the
ping cycle. Measured: from then to the client declaring the link lost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import socket
import statistics

from crmcomms.ami.backoff import HEALTHY_AFTER
from crmcomms.ami.client import AmiClient
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.config import AmiSettings

SECRET = "bench-secret"


async def link_is(client: AmiClient, connected: bool, within: float = 120) -> None:
    async with asyncio.timeout(within):
        while client.connected != connected:
            client.link_changed.clear()
            await client.link_changed.wait()


async def outage_round(client: AmiClient, port: int, down: float) -> float:
    """Cut the PBX for ``down`` s; seconds from it listening again to logged in."""
    loop = asyncio.get_running_loop()
    async with AmiReplayServer("crm", SECRET, port=port):
        await link_is(client, True)
        await asyncio.sleep(HEALTHY_AFTER + 1)  # a healthy link before the fault
    await link_is(client, False)
    await asyncio.sleep(down)
    async with AmiReplayServer("crm", SECRET, port=port):
        back = loop.time()
        await link_is(client, True)
        return loop.time() - back


async def silent_round(
    client: AmiClient, server: AmiReplayServer, rng: random.Random, interval: float
) -> float:
    """Black-hole the link at a random phase of the ping cycle; seconds until noticed."""
    loop = asyncio.get_running_loop()
    server.pause_pings = False
    await link_is(client, True)
    await asyncio.sleep(rng.uniform(0, interval))
    server.pause_pings = True
    silent = loop.time()
    await link_is(client, False)
    return loop.time() - silent


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"{name:<22} n={len(values):<3} min {ordered[0]:.3f}  median "
        f"{statistics.median(ordered):.3f}  max {ordered[-1]:.3f} s"
    )


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)  # the client's link up/down lines are expected
    rng = random.Random(args.seed)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = AmiSettings(host="127.0.0.1", port=port, username="crm", secret=SECRET)
    print(
        f"defaults: ping_interval {settings.ping_interval:g} s, ping_timeout "
        f"{settings.ping_timeout:g} s, reconnect_max_delay {settings.reconnect_max_delay:g} s"
    )
    client = AmiClient(settings, lambda _m: None, random=rng.random)
    task = asyncio.create_task(client.run())
    try:
        for down in args.outages:
            gaps = [await outage_round(client, port, down) for _ in range(args.rounds)]
            print(summary(f"outage {down:g} s -> in", gaps), flush=True)
        async with AmiReplayServer("crm", SECRET, port=port) as server:
            found = [
                await silent_round(client, server, rng, settings.ping_interval)
                for _ in range(args.silent_rounds)
            ]
        print(summary("black hole -> noticed", found))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", default="1,5,20", help="outage lengths in s, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--silent-rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.outages = [float(x) for x in args.outages.split(",")]
    return args


if __name__ == "__main__":
    asyncio.run(main(_parse()))
