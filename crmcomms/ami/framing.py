"""AMI wire framing, sans-I/O: bytes in, header blocks out.

AMI sends ``Key: Value`` lines ended by CRLF, one blank line after each block,
and a banner line (``Asterisk Call Manager/11.0.0``) first. We decode only whole
lines (everything up to the last ``\\n`` received), so a UTF-8 character split
across two TCP reads is never lost (panoramisk decodes each read on its own and
drops it). Bare ``\\n`` and the stray ``\\r\\n\\n`` some Asterisk versions send are
accepted as line ends. A block with a line that is not ``Key: Value`` is
returned as :class:`Malformed` so the caller can count and log it; so is a block
longer than ``max_block`` (1 MiB), whose rest is skipped without keeping it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

Message = dict[str, str]
Keep = Callable[[str], bool]
"""Decides from a block's text (``\n`` line ends) whether to parse it at all."""


MAX_BLOCK = 1024 * 1024
"""Default size limit of one block (text plus the unfinished line), in characters."""

_BLOCK_END = re.compile(rb"\n\r*\n")
_LINE_END_FIRST = re.compile(rb"\r*\n")


@dataclass(frozen=True, slots=True)
class Malformed:
    """A block that could not be parsed, with the reason and its start."""

    reason: str
    raw: str


class AmiFramer:
    """Incremental parser of one AMI connection's byte stream.

    ``keep`` (optional) sees each complete block's text first; a block it refuses
    is counted in ``skipped`` and never parsed. Most of an AMI stream is events a
    consumer has no use for, so this is where the parsing cost goes away.

    Linear in its input: an unfinished block is kept as a list of pieces and only
    the new bytes are searched for its end. A block longer than ``max_block`` is
    returned once as :class:`Malformed` as soon as it gets too long; the rest of
    it is dropped unread up to its end, and the stream goes on after it.
    """

    def __init__(self, keep: Keep | None = None, max_block: int = MAX_BLOCK) -> None:
        self._tail: list[bytes] = []  # the unfinished line, as received
        self._tail_len = 0
        self._text: list[str] = []  # whole lines of the unfinished block
        self._text_len = 0
        self._dropping = False  # inside a block too long to keep
        self._dropped_line_end = False  # what was dropped last ended a line
        self._keep = keep
        self.max_block = max_block
        self.skipped = 0
        self.banner: str | None = None

    def feed(self, data: bytes) -> list[Message | Malformed]:
        """Add received bytes; return every block completed by them, in order."""
        if self._dropping:
            data = self._skip_rest(data)
            if not data:
                return []
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self._tail.append(data)
            self._tail_len += len(data)
            return self._check_size()
        raw = b"".join((*self._tail, data[:cut])) if self._tail else data[:cut]
        rest = data[cut:]
        self._tail = [rest] if rest else []
        self._tail_len = len(rest)
        text = _decode(raw)
        if self.banner is None:
            text = self._take_banner(text)
        if "\n\n" not in text and not (self._text_len and text[:1] == "\n"):
            self._text.append(text)
            self._text_len += len(text)
            return self._check_size()
        if self._text:
            text = "".join(self._text) + text
        blocks = text.split("\n\n")
        last = blocks.pop()
        self._text = [last] if last else []
        self._text_len = len(last)
        return self._parse(blocks) + self._check_size()

    def _parse(self, blocks: list[str]) -> list[Message | Malformed]:
        keep, max_block = self._keep, self.max_block
        parsed: list[Message | Malformed] = []
        skipped = 0
        for block in blocks:
            if not block or block[0] == "\n":  # three or more line ends in a row
                block = block.lstrip("\n")
                if not block:
                    continue
            if len(block) > max_block:
                parsed.append(self._too_long(block))
            elif keep is None or keep(block):
                parsed.append(_parse_block(block))
            else:
                skipped += 1
        self.skipped += skipped
        return parsed

    def _check_size(self) -> list[Message | Malformed]:
        """The unfinished block, once it is too long: reported, dropped, its end awaited."""
        if self._text_len + self._tail_len <= self.max_block:
            return []
        tail = b"".join(self._tail)
        start = "".join(self._text)[:200] or _decode(tail[:200])
        self._dropped_line_end = not tail.strip(b"\r")
        self._text, self._text_len, self._tail, self._tail_len = [], 0, [], 0
        self._dropping = True
        return [self._too_long(start)]

    def _too_long(self, block: str) -> Malformed:
        return Malformed(f"block longer than {self.max_block} characters, dropped", block[:200])

    def _skip_rest(self, data: bytes) -> bytes:
        """Drop ``data`` up to the end of the block being dropped; return what follows."""
        match = _LINE_END_FIRST.match(data) if self._dropped_line_end else None
        if match is None:
            match = _BLOCK_END.search(data)
        if match is None:
            stripped = data.rstrip(b"\r")
            if stripped:
                self._dropped_line_end = stripped.endswith(b"\n")
            return b""
        self._dropping = False
        return data[match.end() :]

    def _take_banner(self, text: str) -> str:
        first, sep, rest = text.partition("\n")
        if not sep:
            return text
        if ":" in first or not first:
            self.banner = ""
            return text
        self.banner = first
        return rest


def _decode(raw: bytes) -> str:
    """Whole lines as text, without ``\\r``.

    ASCII (nearly every read) drops its ``\\r`` before decoding, the quicker order;
    anything else is decoded first, so that dropping a ``\\r`` never joins the two
    halves of a broken UTF-8 sequence into a character.
    """
    if raw.isascii():
        return raw.replace(b"\r", b"").decode("ascii")
    return raw.decode("utf-8", "replace").replace("\r", "")


def _parse_block(block: str) -> Message | Malformed:
    """The block's headers, built in one go; anything unusual goes to :func:`_parse_lines`.

    A line without ``:`` or a repeated key leaves the dict shorter than the
    block; an empty key or one with a space shows among the keys.
    """
    lines = block.split("\n")
    message = {
        key: value.strip()
        for key, colon, value in map(str.partition, lines, itertools.repeat(":"))
        if colon
    }
    if len(message) < len(lines) or "" in message or " " in "".join(message):
        return _parse_lines(block)
    return message


def _parse_lines(block: str) -> Message | Malformed:
    """Line by line: repeated keys joined with ``\\n``, the first bad line reported."""
    message: Message = {}
    for line in block.strip("\n").split("\n"):
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key:
            return Malformed(f"not a 'Key: Value' line: {line[:80]!r}", block[:200])
        value = value.strip()
        if key in message:
            message[key] = f"{message[key]}\n{value}"
        else:
            message[key] = value
    return message


def encode_action(fields: dict[str, str]) -> bytes:
    """One action block on the wire; values must not contain line breaks."""
    lines = []
    for key, value in fields.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"AMI action field {key} contains a line break")
        lines.append(f"{key}: {value}\r\n")
    return ("".join(lines) + "\r\n").encode("utf-8")
