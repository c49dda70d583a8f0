"""Finding a call's recording file under ``ami.recordings_dir``.

The call log keeps the path MixMonitor wrote on the PBX (``MIXMONITOR_FILENAME``),
e.g. ``/var/spool/asterisk/monitor/2024/05/17/in-4930-...-1715948000.12.wav`` on
FreePBX, which files recordings in dated folders ``YYYY/MM/DD`` of the PBX's local
date. ``recordings_dir`` is where those files are readable here (the same folder or
a mount of it), so the stored path is matched by its tail, not taken as it is:

1. the stored path's last parts (``YYYY/MM/DD/name`` down to ``name``) under the dir;
2. the dated folders around the call's start (the PBX's local date may differ
   from the UTC one) by file name;
3. an index of every file name in the tree, built on the first miss in a thread
   and rebuilt on a later miss once it is ``refresh_after`` old, so a lookup stays
   one dictionary access however many recordings there are.

Nothing outside ``recordings_dir`` is ever served (``..`` parts are refused).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

TAIL_PARTS = 4  # YYYY/MM/DD/name
DAYS_AROUND = (0, -1, 1)


class RecordingFinder:
    """Resolves stored recording paths to files under one recordings directory."""

    def __init__(
        self,
        root: Path,
        *,
        refresh_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.refresh_after = refresh_after
        self._clock = clock
        self._index: dict[str, Path] = {}
        self._built_at: float | None = None
        self._building: asyncio.Lock | None = None
        self.index_builds = 0

    async def find(self, stored: str | None, started_at: datetime | None) -> Path | None:
        """The readable file of the recording MixMonitor wrote as ``stored``, or None."""
        parts = _safe_parts(stored)
        if not parts:
            return None
        direct = self._direct(parts, started_at)
        if direct is not None:
            return direct
        return await self._indexed(parts[-1])

    def _direct(self, parts: tuple[str, ...], started_at: datetime | None) -> Path | None:
        for candidate in _candidates(self.root, parts, started_at):
            if candidate.is_file():
                return candidate
        return None

    async def _indexed(self, name: str) -> Path | None:
        found = self._index.get(name)
        if found is not None and found.is_file():
            return found
        if self._built_at is None or self._clock() - self._built_at >= self.refresh_after:
            await self._rebuild()
            found = self._index.get(name)
        return found if found is not None and found.is_file() else None

    async def _rebuild(self) -> None:
        self._building = self._building or asyncio.Lock()
        started = self._clock()
        async with self._building:
            if self._built_at is not None and self._built_at >= started:
                return  # another lookup rebuilt it while this one waited
            self._index = await asyncio.to_thread(index_tree, self.root)
            self._built_at = self._clock()
            self.index_builds += 1


def index_tree(root: Path) -> dict[str, Path]:
    """Every file name under ``root`` (recursively) -> its path; the newest of equal names."""
    index: dict[str, Path] = {}
    for folder, _dirs, files in sorted(os.walk(root)):
        for name in files:
            index[name] = Path(folder) / name
    return index


def _safe_parts(stored: str | None) -> tuple[str, ...]:
    if not stored:
        return ()
    parts = tuple(p for p in PurePosixPath(stored).parts if p != "/")
    if not parts or any(p in ("..", ".") or "\\" in p for p in parts):
        return ()
    return parts


def _candidates(root: Path, parts: tuple[str, ...], started: datetime | None) -> list[Path]:
    tails = [root.joinpath(*parts[-n:]) for n in range(min(TAIL_PARTS, len(parts)), 0, -1)]
    if started is None:
        return tails
    days = (started + timedelta(days=d) for d in DAYS_AROUND)
    dated = [root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / parts[-1] for day in days]
    return tails + dated
