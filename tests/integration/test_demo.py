"""`crmcomms demo`: prints its logins and pops real replayed calls on the agent's websocket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import aiohttp


async def test_demo_pops_replayed_calls_and_stops_cleanly() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crmcomms",
        "demo",
        "--port",
        "0",
        "--speed",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        banner = ""
        async with asyncio.timeout(60):
            while not (match := re.search(r"Open (http://127\.0\.0\.1:\d+)/", banner)):
                line = (await proc.stdout.readline()).decode()
                assert line, f"demo exited: {(await proc.stderr.read()).decode()[-2000:]}"
                banner += line
            while "sue" not in banner:
                banner += (await proc.stdout.readline()).decode()
        assert "DEMO" in banner and "bob" in banner and "demo-bob" in banner
        url = match.group(1)
        async with aiohttp.ClientSession() as http:
            login = {"username": "bob", "password": "demo-bob"}
            async with http.post(f"{url}/api/login", json=login) as resp:
                token = (await resp.json())["token"]
            async with http.ws_connect(f"{url}/ws?token={token}") as ws:
                async with asyncio.timeout(60):
                    async for msg in ws:
                        event = json.loads(msg.data)
                        # the first calls may have rung before bob connected: the loop repeats
                        if event["type"] == "call.ringing" and event["card"]["matches"]:
                            break
        assert event["agent"] == "102"
        assert event["card"]["matches"][0]["organization"]["name"] == "Hansen Logistik"
    except BaseException:
        proc.kill()  # never leave a demo running behind a failed test
        await proc.wait()
        raise
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert "Traceback" not in err.decode()
