"""How long a login token stays good, for the websockets that were opened with it.

A websocket is authenticated once, when it opens; :meth:`TokenWatch.until_invalid`
returns when its token stops being good: at once on a logout in this process
(:meth:`TokenWatch.revoke`), at its expiry time, or at the next re-check (every
``recheck`` seconds) after a logout in another process or the agent's removal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select

from core.agents import hash_token
from core.db import SessionFactory
from core.models import ApiToken, utcnow


class TokenWatch:
    """Tells websockets when their token has ended (see the module docstring)."""

    def __init__(self, sessions: SessionFactory, recheck: float) -> None:
        self._sessions, self._recheck = sessions, recheck
        self._revoked: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def revoke(self, token: str) -> None:
        """The token was logged out: end its websockets now."""
        for event in self._revoked.get(hash_token(token), ()):
            event.set()

    async def until_invalid(self, token: str) -> None:
        """Return once ``token`` is no longer good."""
        key, revoked = hash_token(token), asyncio.Event()
        self._revoked[key].add(revoked)
        try:
            while (delay := await self._good_for(key)) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, self._recheck)):
                        await revoked.wait()
                        return
        finally:
            self._forget(key, revoked)

    async def _good_for(self, key: str) -> float:
        """Seconds until the token expires (0 when it is gone or expired)."""
        async with self._sessions() as session:
            expires: datetime | None = await session.scalar(
                select(ApiToken.expires_at).where(ApiToken.token_hash == key)
            )
        return 0.0 if expires is None else max((expires - utcnow()).total_seconds(), 0.0)

    def _forget(self, key: str, event: asyncio.Event) -> None:
        events = self._revoked.get(key)
        if events is not None:
            events.discard(event)
            if not events:
                del self._revoked[key]
