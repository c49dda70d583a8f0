"""Recorded AMI streams (``*.ami`` + ``*.times.jsonl``) as replayable blocks.

A capture file holds the exact bytes of one AMI connection: the banner line, the
``Response`` to the recorder's Login, then event blocks. :func:`load_capture` drops
the first two and keeps every other block's exact bytes, its parsed headers and,
when the ``.times.jsonl`` beside it exists, the time it arrived.

:class:`Freshener` rewrites a capture so that a replayed call is a new call: every
Uniqueid/Linkedid value is replaced, consistently across all headers (DestUniqueid,
CEL ``UniqueID``, MixMonitor file names...), by a fresh ``<unix>.<n>`` id, and
``Timestamp`` headers can be shifted to the present.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from crmcomms.ami.framing import AmiFramer, Malformed, Message

_TERMINATOR = re.compile(rb"\r?\n\r?\n")
_ID_VALUE = re.compile(r"^\d+\.\d+$")
_TIMESTAMP = re.compile(rb"^Timestamp: (\d+\.\d+)", re.MULTILINE)
_ID_KEYS = ("uniqueid", "linkedid")


@dataclass(frozen=True, slots=True)
class CaptureBlock:
    """One recorded block: its exact bytes, its headers and when it arrived (if known)."""

    raw: bytes
    fields: Message
    t: float | None = None


def load_capture(source: Path | bytes) -> list[CaptureBlock]:
    """The replayable blocks of a ``.ami`` file (or raw bytes), banner and login dropped."""
    if isinstance(source, Path):
        data = source.read_bytes()
        times = source.with_suffix(".times.jsonl")
        if times.exists():
            return _without_preamble(_blocks_from_times(data, times))
        return _without_preamble(split_blocks(data))
    return _without_preamble(split_blocks(source))


def split_blocks(data: bytes) -> list[CaptureBlock]:
    """Cut a byte stream after each blank line; a leading banner line is its own block."""
    blocks = []
    start = 0
    if not data.split(b"\n", 1)[0].rstrip(b"\r").count(b":"):
        start = data.find(b"\n") + 1
        blocks.append(CaptureBlock(data[:start], {}))
    for match in _TERMINATOR.finditer(data, start):
        blocks.append(_block(data[start : match.end()]))
        start = match.end()
    if data[start:].strip():
        blocks.append(_block(data[start:]))
    return blocks


def _blocks_from_times(data: bytes, times: Path) -> list[CaptureBlock]:
    blocks = []
    for line in times.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            raw = data[entry["offset"] : entry["end"]]
            blocks.append(replace(_block(raw), t=float(entry["t"])))
    return blocks


def _block(raw: bytes) -> CaptureBlock:
    framer = AmiFramer()
    framer.banner = ""
    parsed = framer.feed(
        raw if raw.endswith(b"\n\n") or raw.endswith(b"\n\r\n") else raw + b"\r\n\r\n"
    )
    fields = parsed[0] if parsed and not isinstance(parsed[0], Malformed) else {}
    return CaptureBlock(raw, fields)


def _without_preamble(blocks: list[CaptureBlock]) -> list[CaptureBlock]:
    """Drop the banner line and the recorder's Login response (the first Response)."""
    if blocks and not blocks[0].fields:
        blocks = blocks[1:]
    if blocks and "Response" in blocks[0].fields:
        blocks = blocks[1:]
    return blocks


class Freshener:
    """Rewrites the call ids (and optionally times) of a capture for one more replay."""

    def __init__(self, blocks: list[CaptureBlock], serials: Iterator[int]) -> None:
        ids = sorted(_call_ids(blocks), key=len, reverse=True)
        self._pattern = (
            re.compile(
                rb"(?<![\d.])(" + b"|".join(re.escape(i.encode()) for i in ids) + rb")(?!\d)"
            )
            if ids
            else None
        )
        self._ids = ids
        self._serials = serials
        self._first_time = next(
            (float(b.fields["Timestamp"]) for b in blocks if "Timestamp" in b.fields), None
        )

    def mapping(self, stamp: int) -> dict[bytes, bytes]:
        """Fresh ids ``<stamp>.<n>`` for every id of the capture (call once per loop)."""
        return {i.encode(): f"{stamp}.{next(self._serials)}".encode() for i in self._ids}

    def rewrite(self, block: CaptureBlock, ids: dict[bytes, bytes], shift: float) -> CaptureBlock:
        """``block`` with ids replaced per ``ids`` and Timestamps moved by ``shift`` seconds."""
        raw = block.raw
        if self._pattern is not None and ids:
            raw = self._pattern.sub(lambda m: ids[m.group(0)], raw)
        if shift:
            raw = _TIMESTAMP.sub(lambda m: b"Timestamp: %.6f" % (float(m.group(1)) + shift), raw)
        if raw is block.raw:
            return block
        return replace(_block(raw), t=block.t)

    def shift_to(self, now: float) -> float:
        """Seconds to add to the recorded Timestamps so the capture starts at ``now``."""
        return 0.0 if self._first_time is None else now - self._first_time


def _call_ids(blocks: list[CaptureBlock]) -> set[str]:
    found = set()
    for block in blocks:
        for key, value in block.fields.items():
            if key.lower().endswith(_ID_KEYS) and _ID_VALUE.match(value):
                found.add(value)
    return found
