"""Login and bearer tokens against the real app and database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.agents import identify
from core.errors import AuthError
from core.models import utcnow
from crmcomms.services import SERVICES
from tests.conftest import AgentFactory


async def test_login_and_me(app_client: TestClient[Any, Any], make_agent: AgentFactory) -> None:
    identity, token = await make_agent("alice", ("101",))
    resp = await app_client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    assert await resp.json() == {
        "id": identity.id,
        "name": "alice",
        "role": "agent",
        "extensions": ["101"],
        "language": "en",
    }


async def test_wrong_password_and_unknown_user(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    await make_agent("bob", ("102",))
    for body in (
        {"username": "bob", "password": "wrong-pass"},
        {"username": "eve", "password": "x"},
    ):
        resp = await app_client.post("/api/login", json=body)
        assert resp.status == 401
        assert await resp.json() == {"error": "wrong user name or password", "status": 401}


async def test_login_body_validation(app_client: TestClient[Any, Any]) -> None:
    resp = await app_client.post("/api/login", data=b"not json")
    assert resp.status == 400
    resp = await app_client.post("/api/login", json={"username": "x"})
    assert resp.status == 422
    assert "password" in (await resp.json())["error"]


async def test_token_required_missing_bad_and_foreign(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    assert (await app_client.get("/api/contacts")).status == 401
    resp = await app_client.get("/api/contacts", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid or expired token"
    _, token = await make_agent("carol", ("103",))
    resp = await app_client.get("/api/contacts", headers={"Authorization": f"Basic {token}"})
    assert resp.status == 401


async def test_expired_token_and_logout(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("dave", ("104",))
    sessions = app_client.app[SERVICES].sessions
    async with sessions() as session:
        later = utcnow() + timedelta(hours=13)
        with pytest.raises(AuthError, match="expired"):
            await identify(session, token, now=later)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await app_client.post("/api/logout", headers=headers)).status == 200
    assert (await app_client.get("/api/me", headers=headers)).status == 401


async def test_unknown_route_is_json_404(app_client: TestClient[Any, Any]) -> None:
    resp = await app_client.get("/nowhere")
    assert resp.status == 404
    assert (await resp.json())["status"] == 404


async def test_tokens_are_stored_hashed(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    from sqlalchemy import select

    from core.models import ApiToken

    _, token = await make_agent("erin")
    async with app_client.app[SERVICES].sessions() as session:
        stored = list(await session.scalars(select(ApiToken.token_hash)))
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64
