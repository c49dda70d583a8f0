"""How a mailbox session learns that any of its folders got mail, within a second or two.

Decided once per session, from the server's capabilities:

- ``notify``: RFC 5465 NOTIFY on the session's own connection covers every
  folder (``* STATUS`` for the ones not selected, ``* n EXISTS`` for the
  selected one), whatever is selected; between rounds it IDLEs to hear them.
- ``idle``: the session IDLEs on INBOX, and up to ``idle_connections`` more
  connections IDLE on one other folder each; the folders beyond that bound
  are polled every ``folder_poll_interval`` (the session's IDLE is cut short
  for it).
- ``poll``: no IDLE: every folder is polled every ``poll_interval``.

Every wait ends after ``poll_interval`` at the latest (one deadline for the
whole wait, not for the silence between lines: flag changes from other
clients do not stretch it), so every folder is also polled then. A poll
that finds new mail in a folder IDLE or NOTIFY should have announced, twice
without a delivery in between, means the server's IDLE does not deliver
(Cyrus without ``idled`` checks only every minute): the session logs it
and polls every folder every ``folder_poll_interval`` from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from crmcomms.mail.imap import Endpoint, ImapClient, ImapError, connect

log = logging.getLogger(__name__)

#: Polls in a row that found mail push never announced before IDLE counts as not delivering.
STRIKES = 2


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The timings and bounds of watching (from the mailbox's settings; tests shorten them)."""

    poll_interval: float
    idle_timeout: float
    folder_poll_interval: float = 1.0
    idle_connections: int = 4
    use_notify: bool = True


class FolderWatch:
    """Waits for new mail in the folders of one session (see the module docstring)."""

    def __init__(
        self,
        mailbox: str,
        client: ImapClient,
        endpoint: Endpoint,
        folders: Sequence[str],
        settings: WatchSettings,
    ) -> None:
        self.mailbox = mailbox
        self.client = client
        self.endpoint = endpoint
        self.folders = list(folders)
        self.settings = settings
        self.wake = asyncio.Event()  # set by the extra IDLE connections
        self.home = "INBOX" if "INBOX" in self.folders else self.folders[0]
        self.mode = self._choose_mode()
        self.pushed: set[str] = set()  # folders whose new mail IDLE/NOTIFY announces
        self._quiet = False  # the last wait ended without anything announced
        self._strikes = 0
        self._tasks: list[asyncio.Task[None]] = []

    def _choose_mode(self) -> str:
        capabilities = self.client.capabilities
        if "IDLE" not in capabilities:
            return "poll"
        if "NOTIFY" in capabilities and self.settings.use_notify:
            return "notify"
        return "idle"

    @property
    def polled(self) -> list[str]:
        """The folders only polling finds new mail in."""
        return [folder for folder in self.folders if folder not in self.pushed]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FolderWatch]:
        """Set the watch up (NOTIFY, extra IDLE connections) for the session's duration."""
        if self.mode == "notify":
            await self.client.notify(self.folders)
            self.pushed = set(self.folders)
        elif self.mode == "idle":
            self.pushed = {self.home}
            others = [folder for folder in self.folders if folder != self.home]
            for folder in others[: self.settings.idle_connections]:
                self.pushed.add(folder)
                self._tasks.append(asyncio.create_task(self._idle_on(folder)))
        log.info(
            "mailbox %s: watching %s (%s%s)",
            self.mailbox,
            ", ".join(self.folders),
            self.mode,
            f"; polled every {self.settings.folder_poll_interval:g} s: {', '.join(self.polled)}"
            if self.mode == "idle" and self.polled
            else "",
        )
        try:
            yield self
        finally:
            await self._stop_connections()

    async def _stop_connections(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _idle_on(self, folder: str) -> None:
        """One more connection IDLEing on ``folder``; on failure the folder is polled."""
        try:
            async with connect(self.endpoint) as client:
                await client.examine(folder)
                while True:
                    changed = await client.idle(self.settings.idle_timeout)
                    if changed or client.notices:
                        client.notices.clear()
                        self.wake.set()
        except ImapError as exc:
            log.warning(
                "mailbox %s: cannot IDLE on %s (%s); polling it every %g s",
                self.mailbox,
                folder,
                exc,
                self.settings.folder_poll_interval,
            )
            self.pushed.discard(folder)
            self.wake.set()

    def round_starts(self) -> None:
        """A sync round starts: what was announced so far is about to be fetched."""
        self.wake.clear()
        self.client.notices.clear()

    def round_found(self, new: Mapping[str, int]) -> None:
        """What the round found: new mail in a pushed folder after a quiet wait is a strike."""
        missed = [folder for folder, n in new.items() if n and folder in self.pushed]
        if not self._quiet or self.mode == "poll":
            if any(new.values()):
                self._strikes = 0  # push delivered
            return
        if not missed:
            return
        self._strikes += 1
        if self._strikes >= STRIKES:
            log.warning(
                "mailbox %s: the server's IDLE did not announce new mail in %s that a poll "
                "found; polling every folder every %g s instead",
                self.mailbox,
                ", ".join(missed),
                self.settings.folder_poll_interval,
            )
            self.mode = "poll"
            self.pushed = set()

    async def wait(self) -> None:
        """Until a folder may have new mail, or ``poll_interval`` has passed."""
        self._quiet = False
        if self.mode == "poll":
            self._quiet = not await self._sleep()
            return
        if self.mode == "idle" and await self._home_changed():
            return
        if self.client.notices:
            return
        timeout = self.settings.poll_interval
        if self.mode == "idle" and self.polled:
            timeout = self.settings.folder_poll_interval
        timeout = min(timeout, self.settings.idle_timeout)
        changed = await self.client.idle(timeout, self.wake)
        # only what arrived while IDLE counts as delivered: Cyrus without idled announces
        # nothing while IDLE and the new mail only in its answer to DONE (client.notices)
        self._quiet = not (changed or self.wake.is_set())

    async def _home_changed(self) -> bool:
        """Select the folder the session IDLEs on; whether it got mail since it was synced."""
        before = self.client.uidnext.get(self.home)
        info = await self.client.examine(self.home)
        return before is not None and info.uidnext is not None and info.uidnext > before

    async def _sleep(self) -> bool:
        """Sleep the poll interval (short once IDLE was found not to deliver); True if woken."""
        interval = self.settings.poll_interval
        if "IDLE" in self.client.capabilities:
            interval = self.settings.folder_poll_interval
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await self.wake.wait()
                return True
        return False
