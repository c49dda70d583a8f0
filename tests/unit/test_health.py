"""Liveness and readiness drawn from the components' states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmcomms.health import FAILED, Component, Health

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def healthy() -> tuple[Health, Clock]:
    clock = Clock()
    health = Health(clock)
    health.set("database", "ok", ok=True)
    health.set("mailbox:support", "ok", ok=True)
    health.set("worker:telephony", "running", ok=True, restarts=0)
    health.add_probe("ami", lambda: Component("connected", True, T0))
    return health, clock


def test_all_up_is_live_and_ready() -> None:
    health, _ = healthy()
    report = health.report(websocket_clients=3)
    assert report.live and report.ready
    assert report.as_json() == {
        "status": "ok",
        "live": True,
        "ready": True,
        "components": {
            "ami": {"state": "connected", "since": "2026-11-27T09:00:00Z"},
            "database": {"state": "ok", "since": "2026-11-27T09:00:00Z"},
            "mailbox:support": {"state": "ok", "since": "2026-11-27T09:00:00Z"},
            "worker:telephony": {
                "state": "running",
                "since": "2026-11-27T09:00:00Z",
                "restarts": 0,
            },
        },
        "websocket_clients": 3,
    }


def test_a_link_down_is_live_but_not_ready() -> None:
    health, clock = healthy()
    clock.now = T0 + timedelta(minutes=5)
    health.add_probe("ami", lambda: Component("down", False, clock.now, "connection refused"))
    health.set("mailbox:support", "login refused", ok=False, error="AUTHENTICATIONFAILED")
    report = health.report()
    assert report.live and not report.ready
    body = report.as_json()
    assert body["status"] == "degraded"
    assert body["components"]["ami"]["error"] == "connection refused"
    assert body["components"]["mailbox:support"]["since"] == "2026-11-27T09:05:00Z"


def test_an_optional_component_down_degrades_without_unreadying() -> None:
    health, _ = healthy()
    health.set("outbox:support", "deferring", ok=False, error="421 try later", required=False)
    report = health.report()
    assert report.ready and report.as_json()["status"] == "degraded"


def test_since_moves_only_when_the_state_changes() -> None:
    health, clock = healthy()
    clock.now = T0 + timedelta(seconds=30)
    health.set("database", "ok", ok=True)
    component = health.get("database")
    assert component is not None and component.since == T0
    health.set("database", "down", ok=False, error="TimeoutError")
    component = health.get("database")
    assert component is not None and component.since == clock.now


def test_database_down_or_a_failed_worker_is_not_live() -> None:
    health, _ = healthy()
    health.set("database", "down", ok=False, error="OperationalError: disk I/O error")
    assert not health.report().live
    health.set("database", "ok", ok=True)
    health.set("worker:telephony", FAILED, ok=False, error="KeyError: 'x'", restarts=10)
    report = health.report()
    assert not report.live and not report.ready
    assert report.as_json()["status"] == "failed"
    assert health.fatal() == "worker:telephony failed for good: KeyError: 'x'"
