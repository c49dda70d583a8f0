"""AMI wire framing, sans-I/O: bytes in, header blocks out.

AMI sends ``Key: Value`` lines ended by CRLF, one blank line after each block,
and a banner line (``Asterisk Call Manager/11.0.0``) first. We decode only whole
lines (everything up to the last ``\\n`` received), so a UTF-8 character split
across two TCP reads is never lost (panoramisk decodes each read on its own and
drops it). Bare ``\\n`` and the stray ``\\r\\n\\n`` some Asterisk versions send are
accepted as line ends. A block with a line that is not ``Key: Value`` is
returned as :class:`Malformed` so the caller can count and log it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

Message = dict[str, str]
Keep = Callable[[str], bool]
"""Decides from a block's text (``\n`` line ends) whether to parse it at all."""


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
    """

    def __init__(self, keep: Keep | None = None) -> None:
        self._bytes = b""
        self._text = ""
        self._keep = keep
        self.skipped = 0
        self.banner: str | None = None

    def feed(self, data: bytes) -> list[Message | Malformed]:
        """Add received bytes; return every block completed by them, in order."""
        buffer = self._bytes + data if self._bytes else data
        cut = buffer.rfind(b"\n") + 1
        if cut == 0:
            self._bytes = buffer
            return []
        self._bytes = buffer[cut:]
        text = self._text + _decode(buffer[:cut])
        if self.banner is None:
            text = self._take_banner(text)
        blocks = text.split("\n\n")
        self._text = blocks.pop()
        keep = self._keep
        parsed: list[Message | Malformed] = []
        skipped = 0
        for block in blocks:
            if not block or block[0] == "\n":  # three or more line ends in a row
                block = block.lstrip("\n")
                if not block:
                    continue
            if keep is None or keep(block):
                parsed.append(_parse_block(block))
            else:
                skipped += 1
        self.skipped += skipped
        return parsed

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
