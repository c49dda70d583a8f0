"""Security headers over HTTP (issue 10): on pages, API answers, errors, static files
and the websocket handshake; ``Server:`` names no versions, even for a request the
HTTP parser refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from crmcomms.web.http import PAGE_POLICY
from tests.conftest import AgentFactory

EXPECTED = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Server": "crmcomms",
}


def test_the_page_policy_forbids_framing_and_foreign_scripts() -> None:
    directives = dict(d.strip().split(" ", 1) for d in PAGE_POLICY.split(";"))

    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"


@pytest.mark.parametrize(
    ("path", "auth", "status"),
    [
        ("/", False, 200),
        ("/static/app.js", False, 200),
        ("/healthz", False, 200),
        ("/api/me", True, 200),
        ("/api/me", False, 401),
        ("/api/contacts/999999", True, 404),
        ("/no/such/page", False, 404),
    ],
)
async def test_every_answer_carries_the_headers(
    app_client: TestClient[Any, Any], make_agent: AgentFactory, path: str, auth: bool, status: int
) -> None:
    _, token = await make_agent("alice", ("101",))
    headers = {"Authorization": f"Bearer {token}"} if auth else {}

    resp = await app_client.get(path, headers=headers)

    assert resp.status == status
    assert {name: resp.headers.get(name) for name in EXPECTED} == EXPECTED


async def test_the_websocket_handshake_carries_the_headers(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("alice", ("101",))

    async with app_client.ws_connect(f"/ws?token={token}") as ws:
        assert {name: ws._response.headers.get(name) for name in EXPECTED} == EXPECTED


async def test_a_request_the_parser_refuses_names_no_version(
    app_client: TestClient[Any, Any],
) -> None:
    server = app_client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    head = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()

    assert head.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    server_line = [line for line in head.split(b"\r\n") if line.lower().startswith(b"server:")]
    assert server_line == [b"Server: crmcomms"]
