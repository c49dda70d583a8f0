"""Who may do what, over HTTP against the real app: the permission table on every route,
e-mail visibility (the push's audience), and bad ids and inputs answered 4xx, not 500."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta
from typing import Any

import openpyxl
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from core.agents import hash_token
from core.db import SessionFactory
from core.mail.models import EmailAttachment, EmailContact, EmailMessage
from core.mail.queries import mail_readers
from core.models import Agent, ApiToken, Contact, Task, utcnow
from crmcomms.services import SERVICES
from crmcomms.web.session import ADMIN, AGENT, PERMISSIONS, SUPERVISOR
from tests.conftest import AgentFactory

Headers = dict[str, str]


def auth(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


def routes(client: TestClient[Any, Any]) -> list[tuple[str, str]]:
    """(method, pattern) of every route of the app (HEAD is GET's)."""
    found = set()
    for route in client.app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        found.add((route.method, route.resource.canonical))  # type: ignore[union-attr]
    return sorted(found)


def concrete(pattern: str) -> str:
    """A URL of ``pattern`` with every ``{placeholder}`` set to a missing id."""
    return re.sub(r"\{[^}]+\}", "999999", pattern)


def test_every_route_has_a_rule(app_client: TestClient[Any, Any]) -> None:
    missing = [route for route in routes(app_client) if route not in PERMISSIONS]
    assert missing == [], f"routes without a permission rule in web/session.py: {missing}"


async def expired_token(app_client: TestClient[Any, Any], agent_id: int) -> str:
    token = "expired-" + "x" * 30
    async with app_client.app[SERVICES].sessions.begin() as session:
        session.add(
            ApiToken(
                token_hash=hash_token(token),
                agent_id=agent_id,
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
    return token


async def test_every_route_for_every_caller(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    """No token and an expired token: 401 on every non-public route; a role the rule does
    not name: 403; a role it names: neither (the ids do not exist: 404, or 4xx for a
    body not sent), never 500."""
    agent, agent_token = await make_agent("agent1", ("201",))
    _, supervisor = await make_agent("super1", ("202",), role="supervisor")
    _, admin = await make_agent("admin1", ("203",), role="admin")
    expired = await expired_token(app_client, agent.id)
    callers = {AGENT: agent_token, SUPERVISOR: supervisor, ADMIN: admin}
    for method, pattern in routes(app_client):
        rule = PERMISSIONS[(method, pattern)]
        if not rule.roles or (method == "POST" and pattern == "/api/logout"):
            continue
        url = concrete(pattern)
        for headers in ({}, auth(expired)):
            resp = await app_client.request(method, url, headers=headers)
            assert resp.status == 401, (method, url, headers)
        for role, token in callers.items():
            resp = await app_client.request(method, url, headers=auth(token), json={})
            if role in rule.roles:
                assert resp.status not in (401, 403, 500), (role, method, url, await resp.text())
            else:
                assert resp.status == 403, (role, method, url)


async def test_agents_create_and_annotate_staff_edit_delete_import(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, agent = await make_agent("agent2", ("211",))
    _, supervisor = await make_agent("super2", ("212",), role="supervisor")
    resp = await app_client.post("/api/contacts", json={"first_name": "Ann"}, headers=auth(agent))
    assert resp.status == 201
    url = f"/api/contacts/{(await resp.json())['id']}"
    resp = await app_client.post(f"{url}/notes", json={"body": "hi"}, headers=auth(agent))
    assert resp.status == 201
    for method in ("PUT", "DELETE"):
        resp = await app_client.request(method, url, json={"first_name": "X"}, headers=auth(agent))
        assert resp.status == 403
        assert await resp.json() == {"error": "needs role supervisor or admin", "status": 403}
    csv = b"name,phone\nBob,+4930123456\n"
    resp = await app_client.post(
        "/api/contacts/import?filename=a.csv", data=csv, headers=auth(agent)
    )
    assert resp.status == 403
    resp = await app_client.put(url, json={"first_name": "Anna"}, headers=auth(supervisor))
    assert resp.status == 200
    resp = await app_client.post(
        "/api/contacts/import?filename=a.csv", data=csv, headers=auth(supervisor)
    )
    assert resp.status == 200
    assert (await app_client.delete(url, headers=auth(supervisor))).status == 204


async def test_tasks_are_completed_by_their_assignees_or_staff(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, mine = await make_agent("agent3", ("221",))
    _, other = await make_agent("agent4", ("222",))
    _, supervisor = await make_agent("super3", (), role="supervisor")
    async with app_client.app[SERVICES].sessions.begin() as session:
        tasks = [Task(title=f"call back {i}", assignees=["221"]) for i in range(2)]
        session.add_all(tasks)
        await session.flush()
        first, second = (t.id for t in tasks)
    resp = await app_client.post(f"/api/tasks/{first}/done", headers=auth(other))
    assert resp.status == 403
    assert (await app_client.post(f"/api/tasks/{first}/done", headers=auth(mine))).status == 200
    resp = await app_client.post(f"/api/tasks/{second}/done", headers=auth(supervisor))
    assert resp.status == 200
    assert (await resp.json())["done"] is True


# --- e-mail visibility ----------------------------------------------------------------


def message(n: int, to: list[str], agent_id: int | None = None) -> EmailMessage:
    return EmailMessage(
        mailbox="sales",
        dedupe_key=f"k{n}",
        content_hash=f"h{n}",
        thread_id=f"t{n}",
        subject=f"mail {n}",
        from_=[{"name": "", "address": "customer@example.com"}],
        to=[{"name": "", "address": a} for a in to],
        sort_at=utcnow() - timedelta(minutes=n),
        agent_id=agent_id,
    )


async def test_agents_read_the_mail_the_push_sends_them(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    """Addressed to A (and a display name that only looks like B's address), linked to a
    contact, sent by B: A reads the first two, B the last two, a supervisor all three."""
    a, token_a = await make_agent("agent5", ("231",))
    b, token_b = await make_agent("agent6", ("232",))
    _, supervisor = await make_agent("super5", (), role="supervisor")
    sessions: SessionFactory = app_client.app[SERVICES].sessions
    async with sessions.begin() as session:
        for agent, email in ((a, "Anna@Example.com"), (b, "bert@example.com")):
            await session.execute(update(Agent).where(Agent.id == agent.id).values(email=email))
        contact = Contact(display_name="Customer")
        to_a, linked, by_b = message(1, ["anna@example.com"]), message(2, []), message(3, [], b.id)
        to_a.to.append({"name": "bert@example.com", "address": "bert@example.com.evil"})
        session.add_all([contact, to_a, linked, by_b])
        await session.flush()
        session.add(EmailContact(email_id=linked.id, contact_id=contact.id))
        session.add(
            EmailAttachment(
                email_id=to_a.id, n=0, content_type="text/plain", size=1, sha256="0" * 64
            )
        )
        ids = {"to_a": to_a.id, "linked": linked.id, "by_b": by_b.id}
    expected = {
        token_a: ["to_a", "linked"],
        token_b: ["linked", "by_b"],
        supervisor: ["to_a", "linked", "by_b"],
    }
    for token, visible in expected.items():
        resp = await app_client.get("/api/emails", headers=auth(token))
        assert [e["id"] for e in (await resp.json())["emails"]] == [ids[k] for k in visible]
        for key, email_id in ids.items():
            resp = await app_client.get(f"/api/emails/{email_id}", headers=auth(token))
            assert resp.status == (200 if key in visible else 404), (key, token)
        resp = await app_client.get(f"/api/emails/{ids['to_a']}/attachments/0", headers=auth(token))
        error = (await resp.json())["error"]
        assert error.startswith("attachment" if "to_a" in visible else "e-mail")
    # the push's rule says the same (mail_readers is what batches._audience uses)
    async with sessions() as session:
        readers = await session.run_sync(
            lambda s: mail_readers(s, False, ["anna@example.com", "bert@example.com.evil"])
        )
    assert readers.agent_ids == {a.id}


# --- bad input: 4xx, never 500 ----------------------------------------------------------


async def test_ids_and_limits_outside_ascii_or_range_are_422(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("agent7", ("241",), role="supervisor")
    for raw in ("²", "１", "1²", str(2**63), "9" * 5000, "-1", "1e3"):
        for url in (
            f"/api/contacts/{raw}",
            f"/api/contacts/{raw}/history",
            f"/api/organizations/{raw}/history",
            f"/api/calls/{raw}",
            f"/api/calls/{raw}/recording",
            f"/api/emails/{raw}",
            f"/api/emails/1/attachments/{raw}",
            f"/api/calls?contact={raw}",
            f"/api/emails?contact={raw}",
            f"/api/calls?limit={raw}",
            f"/api/contacts?limit={raw}",
            f"/api/emails?limit={raw}",
            f"/api/tasks?limit={raw}",
        ):
            resp = await app_client.get(url, headers=auth(token))
            too_big_limit = "limit=" in url and raw.isascii() and raw.isdigit()
            assert resp.status == (200 if too_big_limit else 422), (url, await resp.text())
        resp = await app_client.post(f"/api/tasks/{raw}/done", headers=auth(token))
        assert resp.status == 422


async def test_a_note_for_an_unknown_or_huge_call_is_422(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("agent8", ("251",))
    resp = await app_client.post("/api/contacts", json={"first_name": "C"}, headers=auth(token))
    url = f"/api/contacts/{(await resp.json())['id']}/notes"
    for call_id in (12345, 2**63, 2**70):
        resp = await app_client.post(
            url, json={"body": "x", "call_id": call_id}, headers=auth(token)
        )
        assert resp.status == 422, await resp.text()
        assert "call_id" in (await resp.json())["error"]


async def test_a_broken_xlsx_import_is_422(
    app_client: TestClient[Any, Any], make_agent: AgentFactory
) -> None:
    _, token = await make_agent("super9", (), role="supervisor")
    book = openpyxl.Workbook()
    book.active.append(["Name", "Phone"])
    out = io.BytesIO()
    book.save(out)
    good = out.getvalue()
    broken = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[: len(data) // 2] if name.endswith("sheet1.xml") else data)
    for data in (broken.getvalue(), good[: len(good) // 2], good[:-40]):
        resp = await app_client.post(
            "/api/contacts/import?filename=k.xlsx", data=data, headers=auth(token)
        )
        assert resp.status == 422, await resp.text()
        assert "not a readable XLSX file" in (await resp.json())["error"]
