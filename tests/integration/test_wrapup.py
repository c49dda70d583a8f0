"""Wrap-up over the real HTTP API: confirming a call's contact, dispositions, tags, tasks
from the contact view, merging duplicates, and the pushes that keep every page in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from core.models import Call, CallAgent
from crmcomms.push import Subscription
from crmcomms.services import SERVICES
from tests.conftest import AgentFactory

Client = TestClient[Any, Any]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def frames(subscription: Subscription) -> list[dict[str, Any]]:
    """The events queued for a subscription so far (publish never awaits)."""
    found = []
    while not subscription.queue.empty():
        found.append(orjson.loads(subscription.queue.get_nowait()))
    return found


async def _call(client: Client, caller: str, agent: str) -> int:
    """A logged inbound call from ``caller`` answered by extension ``agent``."""
    started = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    async with client.app[SERVICES].sessions.begin() as session:
        call = Call(
            linkedid=f"lid-{caller}",
            direction="inbound",
            status="answered",
            caller=caller,
            caller_e164="+498912345678",
            callee="100",
            answered_by=agent,
            started_at=started,
            agents_rung=[agent],
            transfers=[],
        )
        session.add(call)
        await session.flush()
        session.add(CallAgent(call_id=call.id, extension=agent, roles=3, started_at=started))
        return call.id


async def _contact(client: Client, token: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/api/contacts", json=body, headers=auth(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_a_call_from_munich_is_filed_with_berlin_only_when_the_agent_says_so(
    app_client: Client, make_agent: AgentFactory
) -> None:
    bob, bob_token = await make_agent("bob", ("101",))
    _, carol_token = await make_agent("carol", ("102",))
    berlin = await _contact(
        app_client,
        bob_token,
        {"first_name": "Jürgen", "last_name": "Müller", "phones": [{"raw": "030 12345678"}]},
    )
    resp = await app_client.get("/api/lookup?number=%2B498912345678", headers=auth(bob_token))
    assert (await resp.json())["matches"] == []  # the last 8 digits of two valid numbers
    call_id = await _call(app_client, "089 12345678", "101")
    svc = app_client.app[SERVICES]
    watching = svc.hub.subscribe(bob, None, None)

    resp = await app_client.post(
        f"/api/calls/{call_id}/contact",
        json={"contact_id": berlin["id"]},
        headers=auth(carol_token),
    )
    assert resp.status == 403
    resp = await app_client.post(
        f"/api/calls/{call_id}/contact", json={"contact_id": berlin["id"]}, headers=auth(bob_token)
    )
    assert resp.status == 200, await resp.text()
    call = await resp.json()
    assert call["contacts"] == [berlin["id"]]
    assert call["caller_display"] == "089 12345678"
    [event] = frames(watching)
    assert (event["type"], event["call"]["id"]) == ("call.updated", call_id)

    resp = await app_client.get(f"/api/contacts/{berlin['id']}/history", headers=auth(bob_token))
    [item] = (await resp.json())["items"]
    assert item["match"] == "manual"  # the number does not match: the agent's word
    assert (item["number"], item["number_display"]) == ("089 12345678", "089 12345678")
    assert item["agent_name"] == "bob"


async def test_disposition_is_a_configured_code_on_the_agents_own_call(
    app_client: Client, make_agent: AgentFactory
) -> None:
    _, bob_token = await make_agent("bob", ("101",))
    _, carol_token = await make_agent("carol", ("102",))
    _, sue_token = await make_agent("sue", (), role="supervisor")
    call_id = await _call(app_client, "089 12345678", "101")
    resp = await app_client.get("/api/wrapup", headers=auth(bob_token))
    wrapup = await resp.json()
    assert "resolved" in wrapup["dispositions"] and wrapup["fold_after_seconds"] == 60

    url = f"/api/calls/{call_id}/disposition"
    assert (
        await app_client.put(url, json={"disposition": "bogus"}, headers=auth(bob_token))
    ).status == 422
    assert (
        await app_client.put(url, json={"disposition": "sale"}, headers=auth(carol_token))
    ).status == 403
    resp = await app_client.put(url, json={"disposition": "sale"}, headers=auth(bob_token))
    assert (await resp.json())["disposition"] == "sale"
    resp = await app_client.get(f"/api/calls/{call_id}", headers=auth(sue_token))
    assert (await resp.json())["disposition"] == "sale"
    day = "since=2026-12-01T00:00:00Z&until=2026-12-02T00:00:00Z"
    resp = await app_client.get(f"/api/wall?{day}", headers=auth(sue_token))
    assert (await resp.json())["dispositions"] == {"sale": 1}
    resp = await app_client.put(url, json={"disposition": None}, headers=auth(sue_token))
    assert (await resp.json())["disposition"] is None


async def test_a_task_ticked_off_by_one_agent_leaves_the_others_list(
    app_client: Client, make_agent: AgentFactory
) -> None:
    _, bob_token = await make_agent("bob", ("101",))
    carol, _ = await make_agent("carol", ("102",))
    contact = await _contact(app_client, bob_token, {"last_name": "Vogel"})
    carols_page = app_client.app[SERVICES].hub.subscribe(carol, None, None)
    body = {"title": "Send the offer", "assignees": ["101", "102"]}
    resp = await app_client.post(
        f"/api/contacts/{contact['id']}/tasks", json=body, headers=auth(bob_token)
    )
    task = await resp.json()
    assert resp.status == 201 and task["assignees"] == ["101", "102"]
    resp = await app_client.post(f"/api/tasks/{task['id']}/done", headers=auth(bob_token))
    assert resp.status == 200, await resp.text()
    assert [(e["type"], e["task"]["id"]) for e in frames(carols_page)] == [
        ("task.created", task["id"]),
        ("task.done", task["id"]),
    ]


async def test_tags_by_agents_and_merge_by_supervisors(
    app_client: Client, make_agent: AgentFactory
) -> None:
    _, bob_token = await make_agent("bob", ("101",))
    _, sue_token = await make_agent("sue", (), role="supervisor")
    keep = await _contact(
        app_client, bob_token, {"last_name": "Mueller", "phones": [{"raw": "030 1234567"}]}
    )
    dup = await _contact(
        app_client, bob_token, {"last_name": "Müller", "phones": [{"raw": "0171 5551234"}]}
    )
    resp = await app_client.put(
        f"/api/contacts/{dup['id']}/tags", json={"tags": ["VIP"]}, headers=auth(bob_token)
    )
    assert (await resp.json())["tags"] == ["VIP"]
    resp = await app_client.get("/api/contacts?q=m%C3%BCller", headers=auth(bob_token))
    assert sorted(c["id"] for c in (await resp.json())["contacts"]) == sorted(
        [keep["id"], dup["id"]]
    )
    resp = await app_client.get("/api/contacts?q=0171%20555", headers=auth(bob_token))
    [found] = (await resp.json())["contacts"]
    assert found["id"] == dup["id"] and found["phones"][0]["display"] == "0171 5551234"

    url = f"/api/contacts/{keep['id']}/merge"
    assert (
        await app_client.post(url, json={"duplicate": dup["id"]}, headers=auth(bob_token))
    ).status == 403
    resp = await app_client.post(url, json={"duplicate": dup["id"]}, headers=auth(sue_token))
    merged = await resp.json()
    assert [p["raw"] for p in merged["phones"]] == ["030 1234567", "0171 5551234"]
    assert merged["tags"] == ["VIP"]
    assert (
        await app_client.get(f"/api/contacts/{dup['id']}", headers=auth(bob_token))
    ).status == 404
