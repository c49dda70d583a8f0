"""Backups taken while the daemon runs, restored elsewhere; the commands around them."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.migrate import head_revision
from crmcomms.backup import BackupError, make_backup, read_manifest, restore_backup
from crmcomms.cli import main
from crmcomms.config import Settings
from crmcomms.services import SERVICES
from tests.conftest import AgentFactory, make_settings


def _names(db_file: Path) -> set[str]:
    with closing(sqlite3.connect(db_file)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {name for (name,) in conn.execute("SELECT display_name FROM contacts")}


async def test_round_trip_while_the_daemon_writes(
    app_client: TestClient[Any, Any], make_agent: AgentFactory, tmp_path: Path
) -> None:
    settings: Settings = app_client.app[SERVICES].settings
    _, token = await make_agent("root", role="admin")
    auth = {"Authorization": f"Bearer {token}"}
    for n in range(20):
        resp = await app_client.post(
            "/api/contacts", json={"display_name": f"Before {n}"}, headers=auth
        )
        assert resp.status == 201
    blob = settings.general.data_dir / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"attachment")
    written = 0

    async def keep_writing() -> None:
        nonlocal written
        while True:
            resp = await app_client.post(
                "/api/contacts", json={"display_name": f"During {written}"}, headers=auth
            )
            assert resp.status == 201
            written += 1

    writer = asyncio.create_task(keep_writing())
    backup = tmp_path / "backup"
    manifest = await asyncio.to_thread(make_backup, settings, backup, head_revision())
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert (manifest.database, manifest.blobs, manifest.revision) == ("sqlite", 1, head_revision())
    assert read_manifest(backup) == manifest
    saved = _names(backup / "crmcomms.sqlite3")
    assert {f"Before {n}" for n in range(20)} <= saved
    assert saved <= _names(settings.general.data_dir / "crmcomms.sqlite3")

    with pytest.raises(BackupError, match="not empty"):
        make_backup(settings, backup, head_revision())
    live = settings.model_copy(
        update={"http": settings.http.model_copy(update={"port": app_client.server.port})}
    )
    with pytest.raises(BackupError, match="daemon answers"):
        restore_backup(live, backup, force=True)

    elsewhere = make_settings(tmp_path / "elsewhere")
    restore_backup(elsewhere, backup, force=False)
    assert _names(elsewhere.general.data_dir / "crmcomms.sqlite3") == saved
    assert (
        elsewhere.general.data_dir / blob.relative_to(settings.general.data_dir)
    ).read_bytes() == b"attachment"
    with pytest.raises(BackupError, match="--force"):
        restore_backup(elsewhere, backup, force=False)
    restore_backup(elsewhere, backup, force=True)
    kept = list((elsewhere.general.data_dir).glob("crmcomms.sqlite3.before-restore-*"))
    assert kept and _names(elsewhere.general.data_dir / "crmcomms.sqlite3") == saved


def test_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n')
    c = ("--config", str(config))
    assert main(["db", "current", *c]) == 1
    assert "needs `crmcomms db upgrade`" in capsys.readouterr().out
    assert main(["db", "upgrade", *c]) == 0
    assert main(["db", "current", *c]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["backup", str(tmp_path / "b"), *c]) == 0
    assert "0 attachment file(s)" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "b"), *c]) == 1
    assert "--force replaces it" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "b"), *c, "--force"]) == 0
    assert "restored the backup of" in capsys.readouterr().out
