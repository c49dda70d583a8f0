"""``crmcomms demo``: a self-contained DEMO with a replayed PBX; never used by ``run``.

It creates a temporary SQLite database with demo contacts and agents, starts a
local AMI server on 127.0.0.1 that replays calls recorded from a real Asterisk
(fresh call ids each round, so every round is new calls) and runs the daemon
against it. No Asterisk writes recordings here: each recording a replayed call
names gets a short tone, so the history's player plays. It has no mailbox, so
the page offers no e-mail (``GET /api/mailboxes`` is empty). Everything is
deleted on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from core.agents import add_agent
from core.contacts import ContactInput, create_contact
from core.migrate import upgrade
from core.models import Call
from crmcomms.ami.replay import AmiReplayServer
from crmcomms.app import build_app, run_until_signalled
from crmcomms.config import Settings, parse_settings
from crmcomms.logs import configure_logging
from crmcomms.services import SERVICES, Services

DATA = Path(__file__).parent / "demo_data"
SCENARIOS = (
    "queue-ringall-102-answers",
    "inbound-direct-answered",
    "inbound-direct-missed",
    "outbound-answered",
    "inbound-direct-busy",
    "internal-101-to-102",
    "click-to-dial",
)
AGENTS = (
    ("alice", "101", "agent"),
    ("bob", "102", "agent"),
    ("carol", "103", "agent"),
    ("sue", "", "supervisor"),
)
CONTACTS = (
    ("Jürgen", "Müller", "Müller Bau GmbH", "+49 30 12345678", "j.mueller@example.com"),
    ("Hanna", "Hansen", "Hansen Logistik", "040 123456", "hanna@hansen-logistik.example"),
    ("Petra", "Schulz", "", "0171 5550123", "petra.schulz@example.org"),
    ("Max", "Mueller", "Mueller GmbH", "0171 5559876", "max@mueller-gmbh.example"),
    ("Anna", "Berg", "Berg & Partner", "+49 30 123456", "anna@berg.example"),
)


def demo_settings(tmp: Path, http_port: int, ami_port: int) -> Settings:
    """Settings of the demo: everything in ``tmp``, AMI on the replay server."""
    return parse_settings(
        {
            "general": {"data_dir": str(tmp / "data"), "default_region": "DE"},
            "http": {"host": "127.0.0.1", "port": http_port},
            "ami": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": ami_port,
                "username": "demo",
                "secret": "demo-secret",
                "recordings_dir": str(tmp / "recordings"),
            },
        },
        env={},
    )


async def seed(svc: Services) -> list[tuple[str, str, str]]:
    """Demo contacts and agents; returns the logins (name, password, what)."""
    logins = []
    region = svc.settings.general.default_region
    async with svc.sessions.begin() as session:
        for first, last, org, phone, email in CONTACTS:
            data = ContactInput.model_validate(
                {
                    "first_name": first,
                    "last_name": last,
                    "organization": org or None,
                    "phones": [{"raw": phone, "label": "work"}],
                    "emails": [{"address": email, "label": "work"}],
                }
            )
            await create_contact(session, data, region)
        for name, ext, role in AGENTS:
            password = f"demo-{name}"
            await add_agent(session, name, password, [ext] if ext else [], role=role)
            logins.append((name, password, f"extension {ext}" if ext else role))
    return logins


def write_tone(path: Path, seconds: float = 2.0, rate: int = 8000) -> None:
    """A WAV file (8 kHz, 16-bit mono, like Asterisk's) of a quiet 440 Hz tone."""
    frames = b"".join(
        struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


async def provide_recordings(svc: Services) -> int:
    """A tone for every recording the calls name that is not in recordings_dir; how many."""
    folder = svc.settings.ami.recordings_dir
    async with svc.sessions() as session:
        recorded = select(Call.recording_path).where(Call.recording_path.is_not(None))
        paths = await session.scalars(recorded)
        names = {PurePosixPath(path).name for path in paths if path}
    missing = [folder / name for name in sorted(names) if not (folder / name).exists()]
    for target in missing:
        await asyncio.to_thread(write_tone, target)
    return len(missing)


async def _replay_forever(server: AmiReplayServer, svc: Services, speed: float) -> None:
    await server.wait_logged_in(1, within=30)
    svc.settings.ami.recordings_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for scenario in SCENARIOS:
            await server.replay(
                DATA / f"{scenario}.ami", speed=speed, rewrite_ids=True, shift_timestamps=True
            )
            await asyncio.sleep(4 / speed)
            await provide_recordings(svc)


async def run_demo(port: int, speed: float, emit: Callable[[str], None] = print) -> None:
    """Run the demo until Ctrl-C."""
    configure_logging("INFO")
    with tempfile.TemporaryDirectory(prefix="crmcomms-demo-") as tmp:
        async with AmiReplayServer("demo", "demo-secret") as pbx:
            settings = demo_settings(Path(tmp), port, pbx.port)
            app = build_app(settings)
            svc = app[SERVICES]
            await upgrade(svc.engine)
            logins = await seed(svc)
            replay = asyncio.create_task(_replay_forever(pbx, svc, speed))
            try:
                await run_until_signalled(app, lambda url: _banner(emit, url, logins))
            finally:
                replay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replay


def _banner(emit: Callable[[str], None], url: str, logins: list[tuple[str, str, str]]) -> None:
    emit("=" * 72)
    emit("crmcomms DEMO - temporary database, replayed recorded calls, no real PBX.")
    emit(f"Open {url}/ and log in as:")
    for name, password, what in logins:
        emit(f"    {name:<6} password {password:<14} ({what})")
    emit("Calls replay in a loop (queue, direct, missed, outbound, busy, internal);")
    emit("recordings are a short tone. No mailbox: e-mail is not offered in the demo.")
    emit("Everything is deleted when you stop it with Ctrl-C.")
    emit("=" * 72)
