"""Prometheus view of the AMI link and the tracker, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crmcomms.ami.client import AmiClient
from crmcomms.ami.translate import AmiTranslator
from crmcomms.telephony.backfiller import Backfiller
from crmcomms.telephony.tracker import CallTracker


class _Telephony(Protocol):
    client: AmiClient
    edge: AmiTranslator
    tracker: CallTracker
    backfiller: Backfiller | None
    resyncs: int

    @property
    def queue_depth(self) -> int: ...


class TelephonyCollector(Collector):
    """Link state, event counters and calls in progress of one telephony service."""

    def __init__(self, telephony: _Telephony) -> None:
        self._telephony = telephony

    def collect(self) -> Iterator[Metric]:
        client, tracker = self._telephony.client, self._telephony.tracker
        dropped = self._telephony.edge.stats
        yield GaugeMetricFamily(
            "crmcomms_ami_connected", "1 while logged in to the AMI", value=int(client.connected)
        )
        yield CounterMetricFamily(
            "crmcomms_ami_events",
            "AMI event blocks received (including those skipped unparsed)",
            value=client.messages_received + dropped.filtered,
        )
        yield CounterMetricFamily(
            "crmcomms_ami_malformed",
            "AMI blocks or events skipped as malformed",
            value=client.malformed_blocks + dropped.malformed,
        )
        yield CounterMetricFamily(
            "crmcomms_ami_reconnects", "AMI logins after the first", value=client.reconnects
        )
        yield GaugeMetricFamily(
            "crmcomms_calls_active", "Calls in progress", value=len(tracker.active_calls())
        )
        yield GaugeMetricFamily(
            "crmcomms_ami_queue_depth",
            "AMI blocks received but not handled yet",
            value=self._telephony.queue_depth,
        )
        yield CounterMetricFamily(
            "crmcomms_ami_resyncs",
            "Channel lists applied after a login (start-up and reconnects)",
            value=self._telephony.resyncs,
        )
        yield from self._backfill()

    def _backfill(self) -> Iterator[Metric]:
        backfiller = self._telephony.backfiller
        if backfiller is None:
            return
        stats = backfiller.stats
        for name, help_, value in (
            ("runs", "CDR backfills done", stats.runs),
            ("failures", "CDR backfills failed (retried)", stats.failures),
            ("rows", "CDR rows read by backfills", stats.rows),
            ("calls", "Calls the CDR backfills described", stats.calls),
            ("seconds", "Time spent in CDR backfills", stats.seconds),
        ):
            yield CounterMetricFamily(f"crmcomms_cdr_backfill_{name}", help_, value=value)
