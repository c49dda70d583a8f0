"""Failed-login throttle: a sliding window of failures per user name and per client address.

While a user name or an address has ``per_user`` / ``per_address`` failures in
the last ``window`` seconds, logins answer 429 until the oldest of them leaves
the window. This is checked before the password (a refused try costs no Argon2),
and a try counts as a failure from its start, so parallel tries cannot pass the
limit together. Unknown names count like known ones, so the answers do not tell which exist.
A success clears the name's failures, not the address's. The state is in memory,
per process, bounded in size (the oldest keys are dropped first).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 100_000


class TooManyFailures(Exception):
    """Refused without checking: ``retry_after`` seconds until a try is counted again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class LoginKeys:
    """The counters one login attempt touches."""

    user: str
    address: str


class LoginThrottle:
    """Counts failed logins per user name and per address (see the module docstring)."""

    def __init__(
        self,
        window: float,
        per_user: int,
        per_address: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window, self._clock = window, clock
        self._limits = {"user": per_user, "address": per_address}
        self._failures: dict[str, deque[float]] = {}

    @staticmethod
    def keys(username: str, address: str | None) -> LoginKeys:
        """The keys of an attempt by ``username`` from ``address``."""
        return LoginKeys(f"user:{username.strip().casefold()}", f"address:{address or '?'}")

    def attempt(self, keys: LoginKeys) -> None:
        """TooManyFailures if either key is over its limit; else the attempt counts as a
        failure until :meth:`succeeded` says otherwise (parallel tries are counted too)."""
        now = self._clock()
        wait = max(
            self._wait(keys.user, self._limits["user"], now),
            self._wait(keys.address, self._limits["address"], now),
        )
        if wait > 0:
            raise TooManyFailures(max(1, math.ceil(wait)))
        for key in (keys.user, keys.address):
            self._recent(key, now).append(now)
        if len(self._failures) > MAX_KEYS:
            self._forget_oldest(now)

    def succeeded(self, keys: LoginKeys) -> None:
        """A good password: the user's failures are forgotten, the attempt not counted."""
        self._failures.pop(keys.user, None)
        recent = self._failures.get(keys.address)
        if recent:
            recent.pop()

    def _wait(self, key: str, limit: int, now: float) -> float:
        if key not in self._failures:
            return 0.0
        recent = self._recent(key, now)
        if len(recent) < limit:
            return 0.0
        return recent[len(recent) - limit] + self._window - now

    def _recent(self, key: str, now: float) -> deque[float]:
        """The key's failures still in the window (stored, empty for a new key)."""
        recent = self._failures.setdefault(key, deque())
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        return recent

    def _forget_oldest(self, now: float) -> None:
        for key in [k for k, v in self._failures.items() if not v or v[-1] <= now - self._window]:
            del self._failures[key]
        while len(self._failures) > MAX_KEYS:
            del self._failures[next(iter(self._failures))]
