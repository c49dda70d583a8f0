"""How long a login token stays good, for the websockets that were opened with it.

A websocket is authenticated once, when it opens; :meth:`TokenWatch.until_invalid`
returns when its token stops being good: at once on a logout in this process
(:meth:`TokenWatch.revoke`), at its expiry time, or at the next re-check (every
``recheck`` seconds) after a logout in another process or the agent's removal.

The re-check costs one query per interval for all the open websockets of the
process, not one per socket (5,000 sockets each asking every minute exhausted the
database pool): one task looks up every watched token at once, in chunks of
:data:`CHUNK`; tokens that began to be watched since are looked up together as
soon as the previous lookup is done (their expiry is not known before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterator
from datetime import datetime

from sqlalchemy import select

from core.agents import hash_token
from core.db import SessionFactory
from core.models import ApiToken, utcnow

log = logging.getLogger(__name__)

CHUNK = 10_000
"""Tokens looked up by one query (below SQLite's and PostgreSQL's bound-parameter limits)."""


class _Watched:
    """The websockets of one token: their end events and the token's known expiry."""

    __slots__ = ("ended", "expires")

    def __init__(self) -> None:
        self.ended: set[asyncio.Event] = set()
        self.expires: datetime | None = None  # None: not looked up yet


class TokenWatch:
    """Tells websockets when their token has ended (see the module docstring)."""

    def __init__(
        self,
        sessions: SessionFactory,
        recheck: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions, self._recheck, self._clock = sessions, recheck, clock
        self._watched: dict[str, _Watched] = {}  # by token hash
        self._new: set[str] = set()  # watched since the last lookup
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.lookups = 0
        """Queries made so far (the tests count them)."""

    def revoke(self, token: str) -> None:
        """The token was logged out: end its websockets now."""
        self._end(hash_token(token))

    async def until_invalid(self, token_hash: str) -> None:
        """Return once the token stored as ``token_hash`` is no longer good."""
        watched = self._watched.get(token_hash)
        if watched is None:
            watched = self._watched[token_hash] = _Watched()
            self._new.add(token_hash)
            self._wake.set()
        ended = asyncio.Event()
        watched.ended.add(ended)
        self._ensure_running()
        try:
            await ended.wait()
        finally:
            self._forget(token_hash, ended)

    async def close(self) -> None:
        """Stop the re-check task (``app.on_cleanup``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="token-watch")

    async def _run(self) -> None:
        """Look up new tokens at once, all of them every ``recheck`` seconds, and end
        the websockets of tokens that are gone or expired; stop when nothing is watched."""
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self._recheck
        while self._watched:
            if self._new:
                await self._look_up(self._take_new())
            elif loop.time() >= next_full:
                next_full = loop.time() + self._recheck
                await self._look_up(list(self._watched))
            self._end_expired()
            await self._sleep(min(next_full - loop.time(), self._until_next_expiry()))

    async def _sleep(self, seconds: float) -> None:
        if self._new or not self._watched:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._wake.wait()

    def _take_new(self) -> list[str]:
        new, self._new = list(self._new), set()
        return new

    async def _look_up(self, keys: Collection[str]) -> None:
        """Record the expiry of ``keys``; end those the database no longer has."""
        try:
            found = await self._expiries(keys)
        except Exception:  # the database is away: keep the sockets, try again later
            log.warning("re-checking %d login tokens failed", len(keys), exc_info=True)
            return
        for key in keys:
            watched = self._watched.get(key)
            if key not in found:
                self._end(key)
            elif watched is not None:
                watched.expires = found[key]

    async def _expiries(self, keys: Collection[str]) -> dict[str, datetime]:
        found: dict[str, datetime] = {}
        async with self._sessions() as session:
            for chunk in _chunks(list(keys), CHUNK):
                self.lookups += 1
                query = select(ApiToken.token_hash, ApiToken.expires_at)
                rows = await session.execute(query.where(ApiToken.token_hash.in_(chunk)))
                found.update({key: expires for key, expires in rows})
        return found

    def _end_expired(self) -> None:
        now = self._clock()
        for key, watched in list(self._watched.items()):
            if watched.expires is not None and watched.expires <= now:
                self._end(key)

    def _until_next_expiry(self) -> float:
        known = [w.expires for w in self._watched.values() if w.expires is not None]
        return (min(known) - self._clock()).total_seconds() if known else self._recheck

    def _end(self, key: str) -> None:
        watched = self._watched.pop(key, None)
        self._new.discard(key)
        for event in watched.ended if watched is not None else ():
            event.set()

    def _forget(self, key: str, event: asyncio.Event) -> None:
        watched = self._watched.get(key)
        if watched is None:
            return
        watched.ended.discard(event)
        if not watched.ended:
            del self._watched[key]
            self._new.discard(key)
            if not self._watched:
                self._wake.set()  # nothing left: the task ends


def _chunks(keys: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
