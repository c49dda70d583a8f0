"""docs/grafana-dashboard.json queries only series a running daemon exports.

Every metric name in the dashboard's queries (panels and variables) must be a
sample of a live ``/metrics``: the daemon's telephony (a call replayed), HTTP,
a websocket, a mailbox and its outbox (their server down: errors and lag),
process metrics. A renamed or dropped metric fails here, not on a wall screen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crmcomms.app import mailbox_worker, outbox_worker
from crmcomms.config import MailboxSettings
from crmcomms.mail.sync import SyncTuning
from crmcomms.services import SERVICES
from tests.conftest import free_port
from tests.integration.telephony_harness import running_daemon
from tests.mail_servers import DovecotServer, running
from tests.waits import wait_for_event, wait_until

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression: the panels' targets and the variables' queries."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects (functions, keywords and labels left out)."""
    expr = re.sub(r"label_values\(([^,)]*)(,[^)]*)?\)", r"\1", expr)  # a variable's query
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # matchers, ranges
    expr = re.sub(r"\b\d[\w.]*", " ", expr)  # numbers and durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        if not rest.startswith("(") and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def exported(text: str) -> set[str]:
    """Names of the samples in a Prometheus text exposition."""
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line[:1] != "#"}


def test_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{instance=~"$i", '
        'route="/a/{id}"}[$__rate_interval]))) / on(instance) y and z offset 5m'
    )
    assert metric_names(expr) == {"x_bucket", "y", "z"}
    assert metric_names('label_values(up_metric{job="a"}, instance)') == {"up_metric"}


def test_the_dashboard_is_well_formed() -> None:
    dashboard = load()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        spots = {(x, y) for x in range(box["x"], box["x"] + box["w"])
                 for y in range(box["y"], box["y"] + box["h"])}  # fmt: skip
        assert not spots & cells, f"{panel['title']} overlaps another panel"
        cells |= spots
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"] and panel["description"], panel["title"]
    assert len(set(queries(dashboard))) > 20


def mailbox(name: str, host: str, port: int, user: str, password: str) -> MailboxSettings:
    return MailboxSettings.model_validate(
        {
            "name": name,
            "address": f"{name}@company.test",
            **{"imap_host": host, "imap_port": port, "imap_tls": "none"},
            **{"smtp_host": host, "smtp_port": free_port(), "smtp_tls": "none"},
            **{"username": user, "password": password},
        }
    )


MESSAGE = (
    b"From: Kunde <kunde@example.org>\r\nTo: support@company.test\r\nSubject: Anfrage\r\n"
    b"Message-ID: <1.grafana@example.org>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0100\r\n\r\nHallo\r\n"
)


async def test_every_series_the_dashboard_queries_is_exported(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    wanted = set().union(*(metric_names(expr) for expr in queries(load())))
    dovecot.append(MESSAGE)
    good = mailbox("support", dovecot.host, dovecot.port, dovecot.user, dovecot.password)
    down = mailbox("sales", "127.0.0.1", free_port(), "sales", "x")  # no server: errors, lag
    async with running_daemon(tmp_path) as daemon, daemon.listening("bob"):
        svc = daemon.client.app[SERVICES]
        workers = [
            mailbox_worker(svc, box, SyncTuning(backoff_initial=60.0)) for box in (good, down)
        ]
        async with (
            running(workers[0].run),
            running(workers[1].run),
            running(outbox_worker(svc, good).run),
        ):
            await daemon.replay("inbound-direct-answered")
            await daemon.settle()
            missing: set[str] = set()

            async def all_exported() -> bool:
                nonlocal missing
                missing = wanted - exported(await (await daemon.client.get("/metrics")).text())
                return not missing

            try:
                await wait_until(all_exported, what="every series of the dashboard")
            except AssertionError:
                raise AssertionError(f"the dashboard queries unknown series: {missing}") from None
            for worker in workers:
                await wait_for_event(worker.bodies_done, what="the mailbox worker at rest")
