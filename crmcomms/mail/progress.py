"""Progress of a folder's sync, logged at INFO: folder, done/total and rate."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("crmcomms.mail.sync")

#: Seconds between two progress lines of one long sync.
EVERY = 5.0


class Progress:
    """Counts the messages of one folder's round and logs how far it is."""

    def __init__(self, mailbox: str, folder: str, total: int) -> None:
        self.mailbox = mailbox
        self.folder = folder
        self.total = total
        self.done = 0
        self.started = self._last = time.monotonic()

    def advance(self, fetched: int) -> None:
        """``fetched`` more messages are on their way; a line every ``EVERY`` seconds."""
        now = time.monotonic()
        if now - self._last >= EVERY:
            self._last = now
            self._log("syncing", now)
        self.done += fetched

    def finished(self) -> None:
        """The round stored every message of the folder."""
        self.done = self.total
        self._log("synced", time.monotonic())

    def _log(self, what: str, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        log.info(
            "mailbox %s: %s %s: %d/%d messages (%.0f/s)",
            self.mailbox,
            what,
            self.folder,
            self.done,
            self.total,
            self.done / elapsed,
        )
