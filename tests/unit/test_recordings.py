"""Recordings found under recordings_dir in FreePBX's dated layout and elsewhere in the tree."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmcomms.recordings import RecordingFinder

STARTED = datetime(2024, 5, 17, 23, 30, tzinfo=UTC)  # 18 May on a PBX east of UTC
PBX_DIR = "/var/spool/asterisk/monitor"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVE")
    return path


@pytest.fixture
def monitor(tmp_path: Path) -> Path:
    """A FreePBX-like monitor tree: a few days of dated folders and a flat legacy file."""
    root = tmp_path / "monitor"
    for day in ("2024/05/16", "2024/05/17", "2024/05/18"):
        for n in range(3):
            write(root, f"{day}/q-200-0301234567-{day.replace('/', '')}-{n}.wav")
    write(root, "legacy-1715948000.1.wav")
    return root


async def test_stored_path_found_by_its_dated_tail(monitor: Path) -> None:
    finder = RecordingFinder(monitor)
    name = "q-200-0301234567-20240517-1.wav"
    found = await finder.find(f"{PBX_DIR}/2024/05/17/{name}", STARTED)
    assert found == monitor / "2024/05/17" / name
    assert finder.index_builds == 0


async def test_bare_name_found_in_the_dated_folder_of_the_pbx_local_date(monitor: Path) -> None:
    finder = RecordingFinder(monitor)
    name = "q-200-0301234567-20240518-2.wav"  # the PBX's date is the day after the UTC one
    assert await finder.find(name, STARTED) == monitor / "2024/05/18" / name
    assert finder.index_builds == 0


async def test_flat_layout_still_found(monitor: Path) -> None:
    finder = RecordingFinder(monitor)
    found = await finder.find(f"{PBX_DIR}/legacy-1715948000.1.wav", STARTED)
    assert found == monitor / "legacy-1715948000.1.wav"


async def test_odd_layout_found_through_the_index_built_once(monitor: Path) -> None:
    write(monitor, "archive/old/ext-101-1.wav")
    write(monitor, "archive/old/ext-101-2.wav")
    finder = RecordingFinder(monitor)
    assert await finder.find("/elsewhere/ext-101-1.wav", STARTED) == (
        monitor / "archive/old/ext-101-1.wav"
    )
    assert await finder.find("ext-101-2.wav", None) == monitor / "archive/old/ext-101-2.wav"
    assert finder.index_builds == 1


async def test_index_refreshed_on_a_miss_only_once_it_is_old(monitor: Path) -> None:
    clock = Clock()
    finder = RecordingFinder(monitor, refresh_after=60, clock=clock)
    assert await finder.find("late.wav", None) is None
    write(monitor, "moved/late.wav")
    assert await finder.find("late.wav", None) is None  # the fresh index says no
    assert finder.index_builds == 1
    clock.now += 61
    assert await finder.find("late.wav", None) == monitor / "moved/late.wav"
    assert finder.index_builds == 2


async def test_a_deleted_file_is_not_served_from_the_index(monitor: Path) -> None:
    path = write(monitor, "moved/gone.wav")
    finder = RecordingFinder(monitor)
    assert await finder.find("gone.wav", None) == path
    path.unlink()
    assert await finder.find("gone.wav", None) is None


@pytest.mark.parametrize("stored", [None, "", "../../etc/passwd", "/var/spool/../x.wav"])
async def test_nothing_outside_the_directory(monitor: Path, stored: str | None) -> None:
    (monitor.parent / "passwd").write_text("root")
    assert await RecordingFinder(monitor).find(stored, STARTED) is None
