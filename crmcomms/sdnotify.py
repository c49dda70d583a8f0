"""systemd notify protocol (READY/STOPPING/WATCHDOG) over $NOTIFY_SOCKET; no-op elsewhere."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


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
            sock.sendall(state.encode("utf-8"))

    async def watchdog(self, fatal: Callable[[], str | None] = lambda: None) -> None:
        """Ping the watchdog at half its interval until cancelled, but not while
        ``fatal()`` names a reason (a worker failed for good): systemd then restarts
        the process after ``WatchdogSec``. The reason goes to ``STATUS=`` and the log."""
        if self.watchdog_interval is None or not self._address:
            return
        withheld: str | None = None
        while True:
            reason = fatal()
            if reason is None:
                if withheld is not None:
                    log.warning("watchdog pinged again: %s recovered", withheld)
                    self.notify("STATUS=running")
                self.notify("WATCHDOG=1")
            elif reason != withheld:
                log.error("not pinging the systemd watchdog: %s", reason)
                self.notify(f"STATUS={reason}")
            withheld = reason
            await asyncio.sleep(self.watchdog_interval)
