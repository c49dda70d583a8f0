"""Prometheus metrics, one registry per application (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    """Every counter and gauge the daemon exports on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "crmcomms_http_requests", "HTTP requests served", ["status"], registry=r
        )
        self.calls = Counter("crmcomms_calls", "Calls ended, by status", ["status"], registry=r)
        self.ws_clients = Gauge("crmcomms_websocket_clients", "Connected websockets", registry=r)
        self.push_events = Counter("crmcomms_push_events", "Events published", ["type"], registry=r)
        self.imap_lag = Gauge(
            "crmcomms_imap_lag_seconds",
            "Seconds since the last successful sync",
            ["mailbox"],
            registry=r,
        )
        self.mail_messages = Counter(
            "crmcomms_mail_messages", "Messages stored", ["mailbox"], registry=r
        )
        self.outbox = Gauge("crmcomms_outbox_messages", "Outbox by state", ["state"], registry=r)
        self.worker_restarts = Counter(
            "crmcomms_worker_restarts",
            "Background workers restarted after a crash",
            ["worker"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
