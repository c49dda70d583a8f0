"""The state of every part of the daemon, for /healthz, /readyz and the systemd watchdog.

Workers report their state into one :class:`Health` registry (``set``); parts that
keep their own state (the AMI client) are read when asked (``add_probe``). Two
questions are answered from it:

- **live** (``/healthz``, the watchdog): the process serves, the database answers
  and no worker has failed for good. Restarting the process would help otherwise.
- **ready** (``/readyz``): live, and every configured link (AMI, each mailbox)
  is up and every worker runs. A link being down is not a reason to restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crmcomms.ami.client import AmiClient

#: How long /healthz waits for the database's ``SELECT 1``.
DATABASE_TIMEOUT = 5.0
#: The state of a worker that keeps crashing: liveness fails, systemd restarts us.
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Component:
    """One part's state: ``ok`` says whether it works; ``required`` whether readiness
    depends on it; ``since`` when ``state`` last changed; ``details`` extra JSON fields."""

    state: str
    ok: bool
    since: datetime
    error: str | None = None
    required: bool = True
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """``{"state", "since", "error"?, **details}``."""
        body: dict[str, Any] = {"state": self.state, "since": _iso(self.since)}
        if self.error is not None:
            body["error"] = self.error
        return {**body, **self.details}


Probe = Callable[[], Component]


class Health:
    """Every component's last reported state, by name (``database``, ``ami``,
    ``mailbox:<name>``, ``outbox:<name>``, ``worker:<name>``)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._states: dict[str, Component] = {}
        self._probes: dict[str, Probe] = {}

    def set(
        self,
        name: str,
        state: str,
        *,
        ok: bool,
        error: str | None = None,
        required: bool = True,
        **details: Any,
    ) -> None:
        """Record ``name``'s state; ``since`` moves only when the state changes."""
        old = self._states.get(name)
        since = old.since if old is not None and old.state == state else self._clock()
        self._states[name] = Component(state, ok, since, error, required, details)

    def add_probe(self, name: str, probe: Probe) -> None:
        """Read ``name``'s state from ``probe`` whenever asked."""
        self._probes[name] = probe

    def get(self, name: str) -> Component | None:
        """The state of ``name``, if known."""
        probe = self._probes.get(name)
        return probe() if probe is not None else self._states.get(name)

    def components(self) -> dict[str, Component]:
        """Every component, sorted by name."""
        found = {**self._states, **{name: probe() for name, probe in self._probes.items()}}
        return dict(sorted(found.items()))

    def fatal(self) -> str | None:
        """Why the process should be restarted (a worker failed for good), or None."""
        for name, component in self.components().items():
            if component.state == FAILED:
                return f"{name} failed for good: {component.error}"
        return None

    def report(self, **extra: Any) -> Report:
        """The answer of /healthz and /readyz at this moment."""
        return Report(self.components(), self.fatal(), extra)


@dataclass(frozen=True, slots=True)
class Report:
    """Components plus the two verdicts drawn from them."""

    components: Mapping[str, Component]
    fatal: str | None
    extra: Mapping[str, Any]

    @property
    def live(self) -> bool:
        """The database answers and no worker failed for good."""
        database = self.components.get("database")
        return self.fatal is None and (database is None or database.ok)

    @property
    def ready(self) -> bool:
        """Live, and every required component works."""
        return self.live and all(c.ok for c in self.components.values() if c.required)

    def as_json(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded"|"failed", "live", "ready", "components", ...}``."""
        status = "ok" if all(c.ok for c in self.components.values()) else "degraded"
        return {
            "status": status if self.live else "failed",
            "live": self.live,
            "ready": self.ready,
            "components": {name: c.as_json() for name, c in self.components.items()},
            **self.extra,
        }


async def check_database(health: Health, engine: AsyncEngine) -> None:
    """Run ``SELECT 1`` (bounded by :data:`DATABASE_TIMEOUT`) and record the outcome."""
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error or the timeout: the reason is reported
        health.set("database", "down", ok=False, error=_describe(exc))
    else:
        health.set("database", "ok", ok=True)


def ami_probe(client: AmiClient) -> Probe:
    """The AMI link's state as a component, read from its client."""

    def probe() -> Component:
        if client.connected:
            return Component("connected", True, client.since, details=_ami_details(client))
        error = client.last_error or "not connected yet"
        return Component("down", False, client.since, error, details=_ami_details(client))

    return probe


def _ami_details(client: AmiClient) -> dict[str, Any]:
    return {"reconnects": client.reconnects}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {DATABASE_TIMEOUT:g} s"
    return f"{type(exc).__name__}: {exc}".split("\n", 1)[0]


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")
