"""The call-log writer: call rows written behind the pops, then ``call.ended`` released.

:class:`CallLogWriter` takes the rows the pop enricher built (one
:class:`core.calls.CallRow` per snapshot, the newest of each call kept) and, in a
task of its own, writes every pending row in one transaction on the database
worker (:class:`core.dbthread.DbWorker`), creates the call-back tasks of missed
inbound calls, then publishes what waited for the write: the ``call.ended``
messages and the ``task.created`` of the new tasks. Once ``call.ended`` is out
the call is in the log, the source of truth. A write that fails is logged and
retried with everything that came since.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from core.calls import CallRow, create_callback_task, record_calls
from core.dbthread import DbWorker
from core.history import task_json
from crmcomms.metrics import Metrics
from crmcomms.push import Audience, Publisher

log = logging.getLogger(__name__)

#: How long the writer lets events gather before it writes their calls.
WRITE_BEHIND_DELAY = 0.01
#: How long the writer waits after a failed write before it tries again.
RETRY_DELAY = 1.0
Outgoing = tuple[str, dict[str, Any], Audience]
"""A websocket message: its type, payload and audience."""


def publish(publisher: Publisher, metrics: Metrics, outgoing: Iterable[Outgoing]) -> None:
    """Hand messages to the agents' websockets (hub or bus), counted by type."""
    for type_, payload, audience in outgoing:
        publisher.publish(type_, payload, audience)
        metrics.push_events.labels(type=type_).inc()


@dataclass(frozen=True, slots=True)
class EndedCall:
    """A call's last row, its ``call.ended`` message (sent once written), and whether
    it needs a call-back task (a missed inbound call)."""

    row: CallRow
    message: Outgoing
    callback: bool


@dataclass(frozen=True, slots=True)
class CallLogBatch:
    """Rows to upsert and the missed calls needing a call-back task."""

    rows: Sequence[CallRow]
    callbacks: Sequence[CallRow]


def write_calls(batch: CallLogBatch, conn: Connection) -> list[dict[str, Any]]:
    """Upsert the rows and create the call-back tasks (one transaction); the tasks
    created, as JSON."""
    record_calls(conn, batch.rows)
    created = []
    for row in batch.callbacks:
        task = create_callback_task(conn, row)
        if task is not None:
            created.append(task_json(task))
    return created


Written = Callable[[Sequence[CallRow]], None]
"""Told, after each write, the rows of the calls that ended in it."""


class CallLogWriter:
    """Writes call rows behind the pops and releases what waited for them."""

    def __init__(self, db: DbWorker, publisher: Publisher, metrics: Metrics) -> None:
        self._db = db
        self._publisher = publisher
        self._metrics = metrics
        self._pending: dict[str, CallRow] = {}
        self._ended: list[EndedCall] = []
        self._writing = False
        self._dirty = asyncio.Event()

    @property
    def pending(self) -> bool:
        """Whether some calls are not written yet (or their ``call.ended`` not sent)."""
        return bool(self._pending or self._ended or self._writing)

    def holds(self, linkedid: str) -> bool:
        """Whether a row of the call waits to be written."""
        return linkedid in self._pending

    def add(self, rows: Iterable[CallRow], ended: Iterable[EndedCall]) -> None:
        """Rows to write (the newest of each call wins) and the calls that ended."""
        for row in rows:
            self._pending[row.linkedid] = row
        self._ended += ended
        self._dirty.set()

    async def run(self, written: Written) -> None:
        """Write what is pending, publish what waited, tell ``written``; until cancelled."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await asyncio.sleep(WRITE_BEHIND_DELAY)  # let a burst of events gather
            if not await self._write(written):
                await asyncio.sleep(RETRY_DELAY)
                self._dirty.set()

    async def flush(self, written: Written) -> None:
        """Write what is pending now (at shutdown)."""
        if self._pending or self._ended:
            await self._write(written)

    async def _write(self, written: Written) -> bool:
        pending, self._pending = self._pending, {}
        ended, self._ended = self._ended, []
        callbacks = [call.row for call in ended if call.callback]
        batch = CallLogBatch(list(pending.values()), callbacks)
        self._writing = True
        try:
            tasks = await self._db.run(functools.partial(write_calls, batch))
        except Exception:
            log.exception("could not record %d call(s); retrying", len(pending))
            for lid, row in pending.items():  # unless a newer row came meanwhile
                self._pending.setdefault(lid, row)
            self._ended[:0] = ended
            return False
        finally:
            self._writing = False
        outgoing = [call.message for call in ended]
        outgoing += [
            ("task.created", {"task": task}, Audience(extensions=frozenset(task["assignees"])))
            for task in tasks
        ]
        publish(self._publisher, self._metrics, outgoing)
        for call in ended:
            self._metrics.calls.labels(status=call.row.status).inc()
        written([call.row for call in ended])
        return True
