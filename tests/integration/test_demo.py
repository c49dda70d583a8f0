"""`crmcomms demo`: prints its logins and pops real replayed calls on the agent's websocket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import aiohttp

from tests.waits import wait_until


async def _recording_plays(http: aiohttp.ClientSession, url: str) -> bool:
    """A recorded call of bob's serves its recording (a WAV: the demo's tone)."""
    async with http.get(f"{url}/api/calls?limit=50") as resp:
        calls = (await resp.json())["calls"]
    for call in calls:
        if call["recording_url"]:
            async with http.get(f"{url}{call['recording_url']}") as resp:
                return resp.status == 200 and (await resp.read())[:4] == b"RIFF"
    return False


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
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.get(f"{url}/api/mailboxes") as resp:
                assert (await resp.json())["mailboxes"] == []  # the page offers no e-mail
            await wait_until(lambda: _recording_plays(http, url), 30, "a demo recording")
    except BaseException:
        proc.kill()  # never leave a demo running behind a failed test
        await proc.wait()
        raise
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert "Traceback" not in err.decode()
