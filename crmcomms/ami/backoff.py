"""When to try the AMI connection again: at once after a blink, slowly for a PBX long gone.

Pure (no I/O, no clock of its own: the caller passes ``time.monotonic()``), so the
schedule is tested as a table. The rules, for an admin reading the log:

- the first retries come fast, with full jitter: within 0.25 s, 0.5 s, then 1 s;
- while the link was up within the last :data:`RECENT_WINDOW` seconds (or the
  daemon has just started), the delay never exceeds :data:`RECENT_MAX_DELAY`, so a
  PBX restart or a network blink costs at most about a second after Asterisk is
  reachable again;
- only a PBX down for longer than that backs off further, up to the configured
  ``ami.reconnect_max_delay``;
- a link that stayed up :data:`HEALTHY_AFTER` seconds resets the backoff; one that
  drops right after each login (a flapping link) keeps its backoff.
"""

from __future__ import annotations

from collections.abc import Callable

#: The ceiling of the first retry's delay; it doubles with each failure.
FIRST_RETRY_DELAY = 0.25
#: The longest delay while the link was up recently.
RECENT_MAX_DELAY = 1.0
#: How long after the link was last up it still counts as "recently".
RECENT_WINDOW = 60.0
#: A link up this long was healthy: the next outage starts the backoff afresh.
HEALTHY_AFTER = 10.0


class ReconnectBackoff:
    """The delay before each reconnect attempt; see the module docstring."""

    def __init__(self, max_delay: float, random: Callable[[], float], now: float) -> None:
        self._max_delay = max_delay
        self._random = random
        self._failures = 0
        self._up_since: float | None = None
        self._last_up = now  # start-up counts as "up recently": connect fast at first

    def link_up(self, now: float) -> None:
        """The link is logged in at ``now``."""
        self._up_since = now

    def link_down(self, now: float) -> bool:
        """The link (if it was up) is lost at ``now``; True if it was up until now."""
        if self._up_since is None:
            return False
        if now - self._up_since >= HEALTHY_AFTER:
            self._failures = 0
        self._up_since = None
        self._last_up = now
        return True

    def next_delay(self, now: float) -> float:
        """Seconds to wait before the next attempt (full jitter below the ceiling)."""
        ceiling = min(self.cap(now), FIRST_RETRY_DELAY * 2.0 ** min(self._failures, 30))
        self._failures += 1
        return self._random() * ceiling

    def cap(self, now: float) -> float:
        """The longest delay at ``now``: short while the link was up recently."""
        if now - self._last_up < RECENT_WINDOW:
            return min(RECENT_MAX_DELAY, self._max_delay)
        return self._max_delay
