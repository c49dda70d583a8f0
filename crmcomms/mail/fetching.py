"""How a folder is fetched: UIDs cut into batches by count and bytes, each batch's
headers read in chunks on the parser processes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from core.mail import MailHeaders, parse_headers

_T = TypeVar("_T")


def read_headers(raws: Sequence[bytes]) -> list[MailHeaders]:
    """Read the headers of a batch (a plain function, so a process pool can run it)."""
    return [parse_headers(raw) for raw in raws]


def chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    """``items`` cut into pieces of at most ``size``, to spread over an executor's workers."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def batches(
    pending: Sequence[tuple[int, int]], max_count: int, max_bytes: int
) -> Iterator[list[tuple[int, int]]]:
    """Split (UID, size) pairs into batches of at most ``max_count`` messages and about
    ``max_bytes`` bytes (a single bigger message forms its own batch)."""
    batch: list[tuple[int, int]] = []
    size = 0
    for uid, length in pending:
        if batch and (len(batch) >= max_count or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((uid, length))
        size += length
    if batch:
        yield batch
