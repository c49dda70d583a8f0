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
        self.ami_connected = Gauge("crmcomms_ami_connected", "1 while logged in to AMI", registry=r)
        self.ami_events = Counter("crmcomms_ami_events", "AMI event blocks received", registry=r)
        self.ami_skipped = Counter(
            "crmcomms_ami_skipped_events", "AMI blocks skipped", ["reason"], registry=r
        )
        self.ami_reconnects = Counter("crmcomms_ami_reconnects", "AMI reconnects", registry=r)
        self.calls = Counter("crmcomms_calls", "Calls ended, by status", ["status"], registry=r)
        self.calls_active = Gauge("crmcomms_calls_active", "Calls in progress", registry=r)
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

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
