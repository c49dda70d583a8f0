"""Requests a process forwards to the AMI link's owner, through PostgreSQL.

Several daemons serve agents, one holds the AMI link (:mod:`crmcomms.ownership`).
Click-to-dial, a call control or the live presence asked of another process is
forwarded to the owner, which runs it on its link and its in-memory state:

1. the asking process inserts a row into ``ami_requests`` (the operation and its
   JSON arguments, under an id it chose) and announces it with
   ``NOTIFY crmcomms_ami_requests`` in the same statement;
2. the owner (whichever process holds the lock when it reads) claims every
   unclaimed request younger than :data:`CLAIM_TIMEOUT` with one ``UPDATE ...
   WHERE taken_by IS NULL``: PostgreSQL lets exactly one claimer have a row, so a
   request runs at most once, even if the owner changes meanwhile;
3. the owner runs it and writes the answer (a result, or the error it raised,
   re-raised as the same error by the asker) and announces it with ``NOTIFY
   crmcomms_ami_answers`` (the id only: no 8 KB limit);
4. the asker waits; if nobody claimed the request within :data:`CLAIM_TIMEOUT` it
   withdraws it (the same ``UPDATE``: then nobody ever runs it) and answers 503; a
   request claimed but not answered within :data:`ANSWER_TIMEOUT` gets 504 (it may
   have run: the owner died or lost its link meanwhile).

The owner itself runs a request in place, without the database. Requests are
pruned after :data:`KEEP` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from aiohttp import web

from core.errors import AuthError, Conflict, InvalidInput, NotFound
from crmcomms.ami.errors import AmiActionError, AmiNotConnected, AmiTimeout
from crmcomms.pg import CONNECTION_ERRORS, describe, instance_name, keep_session

log = logging.getLogger(__name__)

REQUESTS = "crmcomms_ami_requests"
ANSWERS = "crmcomms_ami_answers"
#: Seconds a request waits to be claimed by the owner; then it is withdrawn (503).
CLAIM_TIMEOUT = 3.0
#: Seconds a claimed request waits for its answer (AMI's own timeout is 10 s): then 504.
ANSWER_TIMEOUT = 12.0
#: The owner looks for requests this often even without a notification.
SCAN_EVERY = 1.0
#: Seconds requests are kept (for an admin to look at), then pruned.
KEEP = 3600.0

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]
"""Runs one operation on the owner: JSON-able arguments in, a JSON-able result out."""

_ASK = """
WITH asked AS (INSERT INTO ami_requests (id, op, args) VALUES ($1, $2, $3) RETURNING id)
SELECT pg_notify($4, id) FROM asked
"""
_CLAIM = """
UPDATE ami_requests SET taken_by = $1
WHERE taken_by IS NULL AND answer IS NULL AND created_at > now() - make_interval(secs => $2)
RETURNING id, op, args
"""
_WITHDRAW = "UPDATE ami_requests SET taken_by = '' WHERE id = $1 AND taken_by IS NULL RETURNING id"
_ANSWER = """
WITH answered AS (UPDATE ami_requests SET answer = $2 WHERE id = $1 RETURNING id)
SELECT pg_notify($3, id) FROM answered
"""
_READ = "SELECT answer FROM ami_requests WHERE id = $1"
_PRUNE = "DELETE FROM ami_requests WHERE created_at < now() - make_interval(secs => $1)"

#: The errors an answer carries, re-raised as themselves by the asker.
_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (NotFound, Conflict, AuthError, AmiNotConnected, AmiTimeout, AmiActionError)
}


class NoOwner(web.HTTPServiceUnavailable):
    """Nobody holding the PBX link answered a forwarded request."""


def encode_error(exc: Exception) -> dict[str, Any]:
    """An error the owner raised as an answer; anything unexpected becomes a 500."""
    if isinstance(exc, web.HTTPException):
        return {"error": "http", "status": exc.status, "reason": exc.reason}
    if isinstance(exc, InvalidInput):
        return {"error": "InvalidInput", "field": exc.field, "message": exc.message}
    if type(exc).__name__ in _ERRORS:
        return {"error": type(exc).__name__, "message": str(exc)}
    log.error("forwarded request failed on the owner", exc_info=exc)
    return {"error": "http", "status": 500, "reason": "internal error"}


def decode_answer(answer: Mapping[str, Any]) -> Any:
    """The result of an answer, or its error raised."""
    error = answer.get("error")
    if error is None:
        return answer["result"]
    if error == "InvalidInput":
        raise InvalidInput(answer["field"], answer["message"])
    if error in _ERRORS:
        raise _ERRORS[error](answer["message"])
    raise http_error(int(answer["status"]), answer["reason"])


def http_error(status: int, reason: str) -> web.HTTPException:
    """aiohttp's exception of ``status`` (an error the owner answered with)."""
    classes: dict[int, type[web.HTTPException]] = {}
    for cls in _subclasses(web.HTTPError):
        classes.setdefault(cls.status_code, cls)
    return classes.get(status, web.HTTPInternalServerError)(reason=reason)


def _subclasses(cls: type[web.HTTPException]) -> Iterator[type[web.HTTPException]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


class Forwarder:
    """This process's side of ``ami_requests``: asks when it does not own the link,
    runs what others ask when it does (``owns``)."""

    def __init__(
        self,
        url: str,
        owns: Callable[[], bool],
        *,
        claim_timeout: float = CLAIM_TIMEOUT,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self._url = url
        self._owns = owns
        self._claim_timeout = claim_timeout
        self._answer_timeout = answer_timeout
        self._handlers: dict[str, Handler] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one query at a time on the session
        self.forwarded = 0
        self.served = 0

    @property
    def connected(self) -> bool:
        """Whether the session is up (requests can be forwarded and served)."""
        return self._conn is not None

    def register(self, op: str, handler: Handler) -> None:
        """Run ``handler`` for ``op`` (where the link is owned)."""
        self._handlers[op] = handler

    async def call(self, op: str, args: Mapping[str, Any]) -> Any:
        """Run ``op`` here if this process owns the link, else on the owner."""
        if self._owns():
            return await self._handlers[op](args)
        return await self._forward(op, args)

    async def _forward(self, op: str, args: Mapping[str, Any]) -> Any:
        request = uuid.uuid4().hex
        answered = self._waiting[request] = asyncio.Event()
        try:
            await self._query(_ASK, request, op, orjson.dumps(args).decode(), REQUESTS)
            self.forwarded += 1
            answer = await self._answer(request, answered, self._claim_timeout)
            if answer is None and await self._query(_WITHDRAW, request):
                raise NoOwner(reason="no process holding the PBX link answered; try again")
            if answer is None:  # claimed: the owner is at it
                rest = self._answer_timeout - self._claim_timeout
                answer = await self._answer(request, answered, rest)
            if answer is None:
                raise web.HTTPGatewayTimeout(
                    reason="the process holding the PBX link did not answer in time"
                )
        finally:
            del self._waiting[request]
        return decode_answer(orjson.loads(answer))

    async def _answer(self, request: str, answered: asyncio.Event, timeout: float) -> str | None:
        """The request's answer once announced (read again at the end: a notification
        may be lost with a session), None if none within ``timeout``."""
        deadline = time.monotonic() + timeout
        while await _within(answered, deadline - time.monotonic()):
            answered.clear()
            answer: str | None = await self._query(_READ, request)
            if answer is not None:
                return answer
        result: str | None = await self._query(_READ, request)
        return result

    async def _query(self, sql: str, *args: Any) -> Any:
        """One value of one statement on the session; 503 while it is down."""
        conn = self._conn
        if conn is None:
            raise NoOwner(reason="the database is unreachable: cannot reach the PBX link's owner")
        try:
            async with self._lock:
                return await conn.fetchval(sql, *args)
        except CONNECTION_ERRORS as exc:
            raise NoOwner(reason=f"lost the database while forwarding: {describe(exc)}") from exc

    async def run(self) -> None:
        """The session, reconnecting until cancelled."""
        await keep_session(self._url, "requests", self._session, self._lost, self._ended)

    def _lost(self, why: str) -> None:
        log.warning("forwarding session: %s; reconnecting", why)

    def _ended(self) -> None:
        self._conn = None

    async def _session(self, conn: asyncpg.Connection) -> None:
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn: closed.set())
        await conn.add_listener(REQUESTS, lambda *_: self._wake.set())
        await conn.add_listener(ANSWERS, self._answered)
        self._conn = conn
        for answered in self._waiting.values():
            answered.set()  # an answer may have come while the session was down: read it
        pruned = 0.0
        async with asyncio.TaskGroup() as group:
            while not closed.is_set():
                if self._owns():
                    for row in await self._claim(conn):
                        group.create_task(self._serve(conn, row["id"], row["op"], row["args"]))
                    if time.monotonic() - pruned > KEEP / 10:
                        async with self._lock:
                            await conn.execute(_PRUNE, KEEP)
                        pruned = time.monotonic()
                await _within(self._wake, SCAN_EVERY)
                self._wake.clear()
        raise ConnectionError("forwarding session closed")

    def _answered(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        answered = self._waiting.get(payload)
        if answered is not None:
            answered.set()

    async def _claim(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        async with self._lock:
            rows: list[asyncpg.Record] = await conn.fetch(
                _CLAIM, instance_name(), self._claim_timeout
            )
        return rows

    async def _serve(self, conn: asyncpg.Connection, request: str, op: str, args: str) -> None:
        """Run one claimed request and answer it (an answer lost with the session is
        not sent again: the asker answers 504)."""
        try:
            handler = self._handlers[op]
            answer: dict[str, Any] = {"result": await handler(orjson.loads(args))}
        except Exception as exc:
            answer = encode_error(exc)
        self.served += 1
        with contextlib.suppress(*CONNECTION_ERRORS):
            async with self._lock:
                await conn.execute(_ANSWER, request, orjson.dumps(answer).decode(), ANSWERS)


async def _within(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` is set within ``timeout`` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
