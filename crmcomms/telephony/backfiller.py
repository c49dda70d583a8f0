"""CDR backfill: after a gap in the AMI stream, read what Asterisk's CDR says of it.

The telephony service asks for a backfill after every channel list (start-up
and each reconnect) from the last PBX time it saw, and after a call ended
with times the link could not show. :meth:`Backfiller.run` reads the CDR
rows of the window (with a margin), turns them into calls
(:func:`crmcomms.cdr.backfill.calls_from_cdr`), reads what the log holds of
them, and hands the result to the consumer's queue, where the tracker merges
it in order with the live events. Idempotent: the log is keyed by Linkedid,
a merge changes only calls still open to it, and overlapping windows read
the same rows again without effect.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.dbthread import DbWorker
from crmcomms.cdr.backfill import calls_from_cdr
from crmcomms.cdr.source import CdrSource
from crmcomms.telephony.calls import CallSnapshot
from crmcomms.telephony.logged import logged_calls

log = logging.getLogger(__name__)

#: How long a failed read waits before the next try.
RETRY_DELAY = 5.0
Deliver = Callable[[list[tuple[CallSnapshot, CallSnapshot | None]]], None]


@dataclass(slots=True)
class BackfillStats:
    """What the backfills did (for /metrics and the logs)."""

    runs: int = 0
    failures: int = 0
    rows: int = 0
    calls: int = 0
    seconds: float = 0.0


class Backfiller:
    """Reads the CDR windows requested and delivers the calls found, in order."""

    def __init__(
        self,
        source: CdrSource,
        db: DbWorker,
        deliver: Deliver,
        agent_of: Callable[[str], str | None],
        *,
        margin: timedelta,
        settle: float = 1.0,
    ) -> None:
        self._source = source
        self._db = db
        self._deliver = deliver
        self._agent_of = agent_of
        self._margin = margin
        self._settle = settle
        self._since: datetime | None = None
        self._due = asyncio.Event()
        self._reading = False
        self.stats = BackfillStats()
        self.done = asyncio.Event()  # set after each run (tests wait on it)

    @property
    def pending(self) -> bool:
        """Whether a requested read has not been delivered yet."""
        return self._due.is_set() or self._since is not None or self._reading

    def request(self, since: datetime) -> None:
        """Read the CDR from ``since`` (a PBX time) on, soon; requests merge."""
        self._since = since if self._since is None else min(self._since, since)
        self._due.set()

    async def run(self) -> None:
        """Serve requests until cancelled; a failed read is retried, never fatal."""
        try:
            while True:
                await self._due.wait()
                await asyncio.sleep(self._settle)  # let Asterisk write the last rows
                self._due.clear()
                since, self._since = self._since, None
                if since is None:
                    continue
                self._reading = True
                try:
                    if not await self._once(since):
                        self.request(since)
                        await asyncio.sleep(RETRY_DELAY)
                finally:
                    self._reading = False
        finally:
            await self._source.close()

    async def _once(self, since: datetime) -> bool:
        started = time.perf_counter()
        try:
            rows = await self._source.rows(since - self._margin, None)
            # off the loop: a long outage's thousands of calls would delay the pops
            calls = await asyncio.to_thread(calls_from_cdr, rows, self._agent_of)
            ids = [call.linkedid for call in calls]
            logged = await self._db.read(functools.partial(logged_calls, ids))
        except Exception:
            self.stats.failures += 1
            log.exception("CDR backfill from %s failed; retrying", since.isoformat())
            return False
        self._deliver([(call, logged.get(call.linkedid)) for call in calls])
        took = time.perf_counter() - started
        stats = self.stats
        stats.runs += 1
        stats.rows += len(rows)
        stats.calls += len(calls)
        stats.seconds += took
        log.info(
            "CDR backfill from %s: %d row(s), %d call(s) in %.3f s",
            (since - self._margin).isoformat(),
            len(rows),
            len(calls),
            took,
        )
        self.done.set()
        return True
