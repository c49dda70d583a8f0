"""Agent administration: core services, the admin API (admins only) and the CLI."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

import core.agents
from core.agent_admin import (
    AgentChanges,
    change_agent,
    list_agents,
    remove_agent,
    set_disabled,
    set_password,
    show_agent,
)
from core.agents import (
    DEFAULT_EXTENSION_PATTERN,
    add_agent,
    identify,
    login,
    valid_extensions,
)
from core.db import SessionFactory
from core.errors import AuthError, Conflict, InvalidInput, NotFound
from crmcomms.cli import main
from tests.conftest import AgentFactory

TTL = __import__("datetime").timedelta(hours=1)


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(core.agents, "_hasher", lambda: cheap)


async def test_clashes_name_the_field(db: SessionFactory) -> None:
    async with db.begin() as session:
        await add_agent(session, "alice", "password-1", ["101"])
        bob = await add_agent(session, "bob", "password-2", ["102"])
        with pytest.raises(Conflict, match=r"^extension: 101 already belongs to agent alice$"):
            await add_agent(session, "carol", "password-3", ["103", "101"])
        with pytest.raises(Conflict, match=r"^name: 'alice' is already the name of agent"):
            await add_agent(session, "alice", "password-3", ["109"])
        with pytest.raises(Conflict, match=r"^extension: 101 already belongs to agent alice$"):
            await change_agent(session, bob.id, AgentChanges(extensions=["101"]))
        with pytest.raises(Conflict, match=r"^name: 'alice'"):
            await change_agent(session, "bob", AgentChanges(name="alice"))


@pytest.mark.parametrize("ext", ["10x4", "", "1 2", "PJSIP/101", "١٠١"])
def test_extensions_are_validated(ext: str) -> None:
    with pytest.raises(InvalidInput) as info:
        valid_extensions([ext], DEFAULT_EXTENSION_PATTERN)
    assert info.value.field == "extension"
    with pytest.raises(InvalidInput, match="twice"):
        valid_extensions(["101", " 101"], DEFAULT_EXTENSION_PATTERN)


SQLITE_ONLY = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_extension_pattern_is_configurable(db: SessionFactory) -> None:
    async with db.begin() as session:
        agent = await add_agent(
            session, "alice", "password-1", ["alice"], extension_pattern="[a-z0-9]+"
        )
        with pytest.raises(InvalidInput, match="expected"):
            await change_agent(session, agent.id, AgentChanges(extensions=["101"]), "[a-z]+")
    assert agent.extensions == {"alice"}


@SQLITE_ONLY
async def test_change_list_show(db: SessionFactory) -> None:
    async with db.begin() as session:
        alice = await add_agent(session, "alice", "password-1", ["101", "111"])
        await add_agent(session, "bob", "password-2", ["102"])
        # extensions move between agents in one change as long as nobody else has them
        changed = await change_agent(
            session,
            "alice",
            AgentChanges(
                name="alicia",
                email="Alicia@Example.com",
                role="supervisor",
                extensions=["111", "121"],
            ),
        )
        assert (changed.name, changed.email, changed.role, changed.extensions) == (
            "alicia",
            "alicia@example.com",
            "supervisor",
            ("111", "121"),
        )
        assert [a.name for a in await list_agents(session)] == ["alicia", "bob"]
        assert (await show_agent(session, alice.id)).name == "alicia"
        assert (await show_agent(session, str(alice.id))).name == "alicia"
        with pytest.raises(NotFound):
            await show_agent(session, "nobody")
        with pytest.raises(InvalidInput, match="email"):
            await change_agent(session, "bob", AgentChanges(email="nope"))


async def test_disable_password_enable_remove(db: SessionFactory) -> None:
    async with db.begin() as session:
        await add_agent(session, "alice", "password-1", ["101"])
        token, _ = await login(session, "alice", "password-1", TTL)
        record = await set_disabled(session, "alice", True)
        assert record.disabled
        with pytest.raises(AuthError):
            await identify(session, token)
        with pytest.raises(AuthError):
            await login(session, "alice", "password-1", TTL)
        # a new password keeps a disabled agent disabled
        assert (await set_password(session, "alice", "password-new")).disabled
        with pytest.raises(AuthError):
            await login(session, "alice", "password-new", TTL)
        assert not (await set_disabled(session, "alice", False)).disabled
        token, _ = await login(session, "alice", "password-new", TTL)
        await set_password(session, "alice", "password-newer")
        with pytest.raises(AuthError):  # a password change signs the agent out
            await identify(session, token)
        await remove_agent(session, "alice")
        assert await list_agents(session) == []
        # the extension is free again
        await add_agent(session, "bob", "password-2", ["101"])


@SQLITE_ONLY
async def test_the_last_admin_stays(db: SessionFactory) -> None:
    async with db.begin() as session:
        await add_agent(session, "root", "password-1", role="admin")
        for attempt in (
            set_disabled(session, "root", True),
            remove_agent(session, "root"),
            change_agent(session, "root", AgentChanges(role="agent")),
        ):
            with pytest.raises(Conflict, match="last enabled admin"):
                await attempt
        await add_agent(session, "root2", "password-2", role="admin")
        await set_disabled(session, "root", True)


# --- HTTP ----------------------------------------------------------------------


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admin_api(app_client: TestClient[Any, Any], make_agent: AgentFactory) -> None:
    _, admin = await make_agent("root", role="admin")
    _, sup = await make_agent("sue", ("200",), role="supervisor")
    for token in (sup,):
        resp = await app_client.get("/api/agents", headers=_auth(token))
        assert resp.status == 403
        resp = await app_client.post(
            "/api/agents", json={"name": "x", "password": "password-x"}, headers=_auth(token)
        )
        assert resp.status == 403
    new = {"name": "alice", "password": "password-1", "extensions": ["101"], "email": ""}
    resp = await app_client.post("/api/agents", json=new, headers=_auth(admin))
    assert resp.status == 201, await resp.text()
    alice = await resp.json()
    assert (alice["extensions"], alice["disabled"]) == (["101"], False)
    resp = await app_client.post(
        "/api/agents", json={**new, "name": "al2", "extensions": ["200"]}, headers=_auth(admin)
    )
    assert (resp.status, (await resp.json())["error"]) == (
        409,
        "extension: 200 already belongs to agent sue",
    )
    resp = await app_client.put(
        f"/api/agents/{alice['id']}", json={"extensions": ["10x4"]}, headers=_auth(admin)
    )
    assert resp.status == 422 and (await resp.json())["error"].startswith("extension:")
    resp = await app_client.put(
        f"/api/agents/{alice['id']}", json={"extensions": ["102"]}, headers=_auth(admin)
    )
    assert (await resp.json())["extensions"] == ["102"]
    resp = await app_client.post(f"/api/agents/{alice['id']}/disable", headers=_auth(admin))
    assert (await resp.json())["disabled"] is True
    resp = await app_client.post("/api/login", json={"username": "alice", "password": "password-1"})
    assert resp.status == 401
    resp = await app_client.post(f"/api/agents/{alice['id']}/enable", headers=_auth(admin))
    resp = await app_client.post(
        f"/api/agents/{alice['id']}/password", json={"password": "password-2"}, headers=_auth(admin)
    )
    assert resp.status == 200
    resp = await app_client.post("/api/login", json={"username": "alice", "password": "password-2"})
    assert resp.status == 200
    listed = await (await app_client.get("/api/agents", headers=_auth(admin))).json()
    assert [a["name"] for a in listed["agents"]] == ["alice", "root", "sue"]
    resp = await app_client.delete(f"/api/agents/{alice['id']}", headers=_auth(admin))
    assert resp.status == 204
    assert (await app_client.get(f"/api/agents/{alice['id']}", headers=_auth(admin))).status == 404
    page = await app_client.get("/admin")
    assert page.status == 200 and "admin.js" in await page.text()


# --- CLI -------------------------------------------------------------------------


def _cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_agent_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "crmcomms.toml"
    config.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n')
    c = ("--config", str(config))

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        return _cli(capsys, monkeypatch, *args, stdin=stdin)

    assert run("db", "upgrade", *c)[0] == 0
    add = ("agent", "add", *c, "--password-stdin")
    assert run(*add, "--name", "alice", "--extension", "101", stdin="password-1\n")[0] == 0
    assert run(*add, "--name", "bob", "--extension", "102", stdin="password-2\n")[0] == 0
    code, _, err = run(*add, "--name", "carol", "--extension", "10x4", stdin="password-3\n")
    assert code == 1 and "extension: '10x4' is not an extension" in err
    code, _, err = run("agent", "set", "bob", *c, "--extension", "101")
    assert (code, err.strip()) == (1, "crmcomms: extension: 101 already belongs to agent alice")
    code, out, _ = run("agent", "set", "bob", *c, "--extension", "103", "--role", "supervisor")
    assert code == 0 and "bob (id 2, supervisor, 103)" in out
    assert run("agent", "disable", "alice", *c)[0] == 0
    code, out, _ = run("agent", "list", *c)
    assert [line.split()[1:4] for line in out.splitlines()[1:]] == [
        ["alice", "agent", "disabled"],
        ["bob", "supervisor", "enabled"],
    ]
    assert run("agent", "enable", "alice", *c)[0] == 0
    code, out, _ = run("agent", "password", "alice", *c, "--password-stdin", stdin="password-9\n")
    assert code == 0 and "signed out" in out
    code, _, err = run("agent", "password", "alice", *c)  # no terminal, no --password-stdin
    assert code == 1 and "--password-stdin" in err
    code, out, _ = run("agent", "show", "alice", *c, "--json")
    assert code == 0 and '"disabled": false' in out
    assert run("agent", "remove", "alice", *c)[0] == 0
    code, _, err = run("agent", "show", "alice", *c)
    assert (code, err.strip()) == (1, "crmcomms: agent 'alice' not found")
