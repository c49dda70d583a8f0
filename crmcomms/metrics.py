"""Prometheus metrics, one registry per application (no module-level state).

Besides the daemon's own series the registry carries the client library's
default collectors (``process_*``: CPU, memory, open files; ``python_gc_*``;
``python_info``). ``*_created`` series are not exported: they double the
series count and no dashboard uses them. ``docs/grafana-dashboard.json`` is a
dashboard on these series (a test keeps its queries to series that exist).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Component(Protocol):
    @property
    def ok(self) -> bool: ...


class _Health(Protocol):
    def components(self) -> Mapping[str, _Component]: ...


class HealthCollector(Collector):
    """/readyz's components as a gauge read at scrape time: 1 while up, 0 while down."""

    def __init__(self, health: _Health) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "crmcomms_component_up",
            "1 while a component of /readyz is up (database, ami, mailbox:NAME...)",
            labels=["component"],
        )
        for name, component in sorted(self._health.components().items()):
            up.add_metric([name], int(component.ok))
        yield up


class Metrics:
    """Every counter, gauge and histogram the daemon exports on /metrics.

    ``health`` adds ``crmcomms_component_up``; ``websocket_clients`` feeds the
    websocket gauge (both read at scrape time)."""

    def __init__(
        self,
        health: _Health | None = None,
        websocket_clients: Callable[[], int] | None = None,
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:
            GCCollector(registry=r)
        if health is not None:
            r.register(HealthCollector(health))
        self.http_requests = Counter(
            "crmcomms_http_requests",
            "HTTP requests served, by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "crmcomms_http_request_duration_seconds",
            "Time to answer an HTTP request (websockets excluded), by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.db_batch_latency = Histogram(
            "crmcomms_db_batch_duration_seconds",
            "Time of one batch of the database worker (kind worker), of a retention run",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pop_latency = Histogram(
            "crmcomms_pop_latency_seconds",
            "From the AMI block of a ringing to its call.ringing handed to the websockets",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.calls = Counter("crmcomms_calls", "Calls ended, by status", ["status"], registry=r)
        self.ws_clients = Gauge("crmcomms_websocket_clients", "Connected websockets", registry=r)
        if websocket_clients is not None:
            self.ws_clients.set_function(websocket_clients)
        self.push_events = Counter("crmcomms_push_events", "Events published", ["type"], registry=r)
        self.imap_lag = Gauge(
            "crmcomms_imap_lag_seconds",
            "Seconds since the last successful sync",
            ["mailbox"],
            registry=r,
        )
        self.mail_sync_errors = Counter(
            "crmcomms_mail_sync_errors",
            "Mailbox sync sessions that failed (connection, login, database) and are retried",
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
        self.retention_deleted = Counter(
            "crmcomms_retention_deleted",
            "Rows deleted or emptied by the daily retention job, by kind",
            ["kind"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
