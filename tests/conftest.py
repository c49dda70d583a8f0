"""Shared fixtures: settings, migrated databases (SQLite and a real PostgreSQL), the app."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core.agents import AgentIdentity, add_agent
from core.db import SessionFactory, create_engine, session_factory
from core.migrate import upgrade
from crmcomms.app import build_app
from crmcomms.config import Settings, parse_settings
from crmcomms.services import SERVICES, Services

PG_BIN = Path("/usr/lib/postgresql/15/bin")
FIXTURES = Path(__file__).parent / "fixtures"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(tmp: Path, **sections: dict[str, Any]) -> Settings:
    """Settings with the data dir in ``tmp``; sections override the defaults."""
    raw: dict[str, Any] = {"general": {"data_dir": str(tmp / "data")}, "http": {"port": 0}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_settings(raw, env={})


@dataclass(frozen=True)
class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1."""

    port: int

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://crm@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        subprocess.run(
            [PG_BIN / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "crm", dbname],
            check=True,
        )
        return self.url(dbname)


def _as_postgres_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Start a real PostgreSQL server for the session (initdb in a temp dir).

    As root the server runs as the ``postgres`` user, in a directory it owns
    (pytest's own temp dirs are private to root).
    """
    base = Path(tempfile.mkdtemp(prefix="crmcomms-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    port = free_port()

    def run(*args: object) -> None:
        cmd = _as_postgres_user([str(a) for a in args])
        subprocess.run(cmd, check=True, capture_output=True)

    run(PG_BIN / "initdb", "-D", data, "-U", "crm", "--auth=trust", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    run(PG_BIN / "pg_ctl", "-D", data, "-o", options, "-w", "-l", base / "log", "start")
    try:
        yield PostgresServer(port)
    finally:
        run(PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionFactory]:
    """A migrated database: SQLite in tmp_path, or a fresh one on the session's PostgreSQL."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").create_database(f"db_{uuid4().hex}")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite3'}"
    engine = create_engine(url)
    await upgrade(engine)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def migrated(settings: Settings) -> Settings:
    """Settings whose SQLite database has been migrated to head."""
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    await engine.dispose()
    return settings


@pytest.fixture
async def app_client(migrated: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The real application on a loopback port, without AMI or mail workers."""
    app = build_app(migrated)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


AgentFactory = Callable[..., Awaitable[tuple[AgentIdentity, str]]]


@pytest.fixture
def make_agent(app_client: TestClient[Any, Any]) -> AgentFactory:
    """Create an agent and log in; returns (identity, token)."""
    svc: Services = app_client.app[SERVICES]

    async def factory(
        name: str, extensions: tuple[str, ...] = (), role: str = "agent"
    ) -> tuple[AgentIdentity, str]:
        password = f"pw-{name}-secret"
        async with svc.sessions.begin() as session:
            identity = await add_agent(session, name, password, extensions, role=role)
        resp = await app_client.post("/api/login", json={"username": name, "password": password})
        assert resp.status == 200, await resp.text()
        return identity, (await resp.json())["token"]

    return factory
