"""The data dir and everything in it are private to the daemon's user (0700 / 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import create_engine
from core.migrate import upgrade
from crmcomms.checks import check_data_dir
from crmcomms.mail import blob_store
from tests.conftest import make_settings


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default (022), under which files used to be created 0644."""
    saved = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_wal_shm_and_data_dir_are_created_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "new" / "place")
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:  # WAL files exist while a connection is open
            await conn.execute(text("SELECT count(*) FROM agents"))
            database = settings.general.data_dir / "crmcomms.sqlite3"
            files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await engine.dispose()
    created = [settings.general.data_dir, *list(settings.general.data_dir.parents)[:2]]
    assert [mode(d) for d in created] == [0o700] * 3


async def test_an_old_world_readable_database_is_made_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.general.data_dir.mkdir(mode=0o755)
    database = settings.general.data_dir / "crmcomms.sqlite3"
    database.touch(mode=0o644)
    engine = create_engine(settings.database_url)
    await engine.dispose()
    assert mode(database) == 0o600
    assert mode(settings.general.data_dir) == 0o755  # an existing directory is the admin's


def test_attachment_blobs_are_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    blobs = blob_store(settings)
    digest = blobs.put(b"%PDF-1.4 contract")
    path = blobs.path(digest)
    assert mode(path) == 0o600
    assert [mode(d) for d in (path.parent, path.parent.parent, blobs.root)] == [0o700] * 3


async def test_check_config_creates_the_data_dir_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert await check_data_dir(settings) is None
    assert mode(settings.general.data_dir) == 0o700
