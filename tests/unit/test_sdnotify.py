"""The systemd watchdog stops while a worker has failed for good, over a real socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmcomms.sdnotify import SystemdNotifier


class Verdicts:
    """The ``fatal()`` the watchdog asks: scripted answers, counted and signalled."""

    def __init__(self, answers: list[str | None]) -> None:
        self.answers = answers
        self.asked = 0
        self._asked = asyncio.Event()

    def __call__(self) -> str | None:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        self._asked.set()
        return answer

    async def wait_asked(self, times: int) -> None:
        async with asyncio.timeout(5):
            while self.asked < times:
                self._asked.clear()
                await self._asked.wait()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    lines = []
    while True:
        try:
            lines.append(sock.recv(256).decode())
        except BlockingIOError:
            return lines


async def test_watchdog_withheld_while_fatal_then_resumed(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000"}
    notifier = SystemdNotifier(environ)
    reason = "worker:telephony failed for good: KeyError: 'Linkedid'"
    verdicts = Verdicts([None, reason, reason, reason, None])
    task = asyncio.create_task(notifier.watchdog(verdicts))
    await verdicts.wait_asked(6)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert received(notify_socket)[:5] == [
        "WATCHDOG=1",
        f"STATUS={reason}",
        "STATUS=running",
        "WATCHDOG=1",
        "WATCHDOG=1",
    ]
