"""systemd notify protocol (READY/STOPPING/WATCHDOG) over $NOTIFY_SOCKET; no-op elsewhere."""

from __future__ import annotations

import asyncio
import os
import socket


class SystemdNotifier:
    """Sends state lines to systemd when started by it with ``Type=notify``."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2_000_000 if usec.isdigit() else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> None:
        """Send one state line such as ``READY=1``."""
        if not self._address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(self._address)
            sock.sendall(state.encode("ascii"))

    async def watchdog(self) -> None:
        """Ping the watchdog at half its interval until cancelled."""
        if self.watchdog_interval is None or not self._address:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
