"""/metrics per route template, process metrics, no _created; JSON logs; the access log."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crmcomms.app import build_app
from crmcomms.logs import JsonFormatter, log_fields
from crmcomms.services import SERVICES
from tests.conftest import AgentFactory, make_settings


async def test_metrics(
    app_client: TestClient[Any, Any], make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    _, token = await make_agent("sue", role="supervisor")
    auth = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "198.51.100.7"}
    caplog.set_level(logging.DEBUG, logger="crmcomms.access")
    for contact_id in (1, 2, 3):
        assert (await app_client.get(f"/api/contacts/{contact_id}", headers=auth)).status == 404
    await app_client.post("/api/contacts/import?filename=x.csv", data=b"Name\nA\n", headers=auth)
    text = await (await app_client.get("/metrics")).text()
    route = 'method="GET",route="/api/contacts/{contact_id}"'
    assert f'crmcomms_http_requests_total{{{route},status="404"}} 3.0' in text
    assert f"crmcomms_http_request_duration_seconds_count{{{route}}} 3.0" in text
    assert 'crmcomms_db_batch_duration_seconds_count{kind="worker"}' in text
    assert "process_resident_memory_bytes" in text and "python_info" in text
    assert "_created" not in text
    # no trusted proxy configured: the peer is the client, whatever the header says
    lines = [r.getMessage() for r in caplog.records if r.name == "crmcomms.access"]
    assert any(line.startswith("127.0.0.1 GET /api/contacts/1 404") for line in lines)
    assert app_client.app[SERVICES].settings.general.log_format == "text"


def test_json_log_lines() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("crmcomms.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log_fields(mailbox="support"):
            logger.warning("synced %d messages", 3, extra={"linkedid": "1700000000.1"})
        logger.error("after")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["msg"] == "synced 3 messages" and first["level"] == "WARNING"
    assert (first["mailbox"], first["linkedid"]) == ("support", "1700000000.1")
    assert "mailbox" not in second


async def test_trusted_proxy_gives_the_client_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, http={"trusted_proxies": ["127.0.0.1", "::1"]})
    caplog.set_level(logging.DEBUG, logger="crmcomms.access")
    app = build_app(settings, own_workers=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/healthz", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"})
        assert resp.status in (200, 503)
    lines = [r.getMessage() for r in caplog.records if r.name == "crmcomms.access"]
    assert any(line.startswith("198.51.100.7 GET /healthz") for line in lines), lines
