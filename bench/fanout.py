"""Websocket fan-out of one process: events/s and publish-to-receive latency.

    python bench/fanout.py [--events 300] [--clients 300] [--batch 10]

A :class:`~crmcomms.push.PushHub` behind the real ``/ws`` handler on 127.0.0.1 and
``--clients`` supervisor websockets in this process (every event goes to every
client). The publisher sends ``--batch`` events, then waits until every client has
the previous batch, so the latency is measured under full load, not queue depth.
Moved here from the integration suite (it measured, asserted no timing, and its
300 clients cost most of a minute of teardown there).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiohttp import web

from core.agents import AgentIdentity
from crmcomms.push import Audience, PushHub
from crmcomms.web.ws import shutdown_hook, websocket_handler

SUPERVISOR = AgentIdentity(1, "sue", "supervisor", frozenset({"200"}))


@dataclass
class Reader:
    """A client reading ``events`` frames, each frame's latency recorded."""

    ws: aiohttp.ClientWebSocketResponse
    seq: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, events: int, latencies: list[float]) -> None:
        async for message in self.ws:
            now = time.perf_counter()
            event = orjson.loads(message.data)
            if event["type"] != "call.ringing":
                continue
            latencies.append(now - event["t"])
            self.seq = event["seq"]
            self.progress.set()
            if self.seq == events:
                return

    async def reached(self, seq: int) -> None:
        while self.seq < seq:
            self.progress.clear()
            await self.progress.wait()


async def serve(hub: PushHub) -> tuple[web.AppRunner, str]:
    async def authenticate(_token: str) -> AgentIdentity:
        return SUPERVISOR

    app = web.Application()
    app.router.add_get("/ws", websocket_handler(hub, authenticate, close_timeout=2.0))
    app.on_shutdown.append(shutdown_hook(hub))
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/ws"


async def publish(hub: PushHub, readers: list[Reader], events: int, batch: int) -> None:
    """Publish in batches, at most one batch ahead of the slowest reader."""
    while hub.current_seq < events:
        for _ in range(min(batch, events - hub.current_seq)):
            hub.publish("call.ringing", {"t": time.perf_counter()}, Audience.all())
        target = hub.current_seq - batch
        if target > 0:
            for reader in readers:
                await reader.reached(target)


async def main_async(args: argparse.Namespace) -> None:
    hub = PushHub()
    runner, url = await serve(hub)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        readers = [
            Reader(await http.ws_connect(url, headers={"Authorization": "Bearer x"}))
            for _ in range(args.clients)
        ]
        tasks = [asyncio.create_task(r.run(args.events, latencies)) for r in readers]
        started = time.perf_counter()
        await publish(hub, readers, args.events, args.batch)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        for reader in readers:
            await reader.ws.close()
    await runner.cleanup()
    cuts = statistics.quantiles(latencies, n=100)
    frames = args.events * args.clients
    print(
        f"fan-out: {args.events} events x {args.clients} clients, batch {args.batch}, "
        f"{elapsed:.2f} s: {args.events / elapsed:,.0f} events/s, {frames / elapsed:,.0f} "
        f"frames/s, latency p50 {cuts[49] * 1e3:.2f} ms p99 {cuts[98] * 1e3:.2f} ms "
        f"max {max(latencies) * 1e3:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
