"""The daemon's collector: the oldest generation on a timer, never by the interpreter."""

from __future__ import annotations

import gc
import weakref

from crmcomms.runtime import FullCollections
from tests.waits import wait_until


async def test_the_oldest_generation_is_collected_on_the_timer_only() -> None:
    before = gc.get_threshold()
    collections = FullCollections(every=0.05)
    collections.start()
    try:
        young, middle, oldest = gc.get_threshold()
        assert (young, middle) == before[:2]
        assert oldest > 1_000_000  # the interpreter's own rule never fires
        full = gc.get_stats()[2]["collections"]
        await wait_until(lambda: collections.collections >= 2, timeout=5, what="two timed runs")
        assert gc.get_stats()[2]["collections"] >= full + 2
    finally:
        collections.stop()
        gc.unfreeze()
    assert gc.get_threshold() == before
    timed = collections.collections
    gc.collect(0)  # nothing is scheduled any more
    assert collections.collections == timed


async def test_cyclic_garbage_is_freed_by_the_timed_collection() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    collections = FullCollections(every=0.05)
    collections.start()
    try:
        freed: list[str] = []
        first, second = Node(), Node()
        first.other, second.other = second, first
        weakref.finalize(first, freed.append, "first")
        gc.collect(1)  # the cycle, still referenced, moves up to the oldest generation
        del first, second
        gc.collect(1)  # the young generations alone do not free it
        assert freed == []
        await wait_until(lambda: freed == ["first"], timeout=5, what="the cycle freed")
    finally:
        collections.stop()
        gc.unfreeze()
