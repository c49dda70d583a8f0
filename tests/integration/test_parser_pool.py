"""The mail parser pool outlives a dead parser process: a new pool, the task once more."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from core.mail import parse_message
from crmcomms.mail.parsers import RestartingPool, restarting_parser_pool
from tests.waits import wait_until

MAIL = Path(__file__).parent.parent / "fixtures" / "mail" / "01-plain-utf8.eml"


@pytest.fixture
def pool() -> Iterator[RestartingPool]:
    pool = restarting_parser_pool(1)  # a pool starts in seconds on a loaded machine
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def die_the_first_time(marker: str) -> int:
    """Kill the worker running it, unless ``marker`` exists (then: its pid); a marker
    that is a directory never counts."""
    if not os.path.isfile(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


async def test_the_next_parse_works_after_a_parser_process_was_killed(
    pool: RestartingPool,
) -> None:
    loop = asyncio.get_running_loop()
    raw = MAIL.read_bytes()
    first = await loop.run_in_executor(pool, parse_message, raw)
    [victim, *_] = pool.pids()
    os.kill(victim, signal.SIGKILL)
    await wait_until(lambda: not _running(victim), what="the parser process gone")
    again = await loop.run_in_executor(pool, parse_message, raw)
    assert again.subject == first.subject
    assert pool.restarts == 1 and victim not in pool.pids()


async def test_a_task_whose_process_dies_runs_once_more(
    pool: RestartingPool, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    pid = await loop.run_in_executor(pool, die_the_first_time, str(tmp_path / "died"))
    assert pid in pool.pids() and pool.restarts == 1
    # a task that kills every process it runs in fails after its second try (and the
    # pool is replaced again for the next task)
    with pytest.raises(BrokenProcessPool):
        await loop.run_in_executor(pool, die_the_first_time, str(tmp_path))  # a dir exists


def _running(pid: int) -> bool:
    """Process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
