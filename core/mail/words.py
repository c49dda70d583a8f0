"""RFC 2047 encoded words, decoded leniently.

Handles what real senders get wrong: encoded words glued to plain text, raw
spaces inside Q text, missing base64 padding, unknown charsets, and
multi-byte characters split across adjacent encoded words (adjacent words of
one charset are joined as bytes before decoding). A malformed word stays as
it was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from core.mail.decode import b64decode_lenient, decode_text, qp_decode

_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")
_CONTROL = re.compile(r"[ \t]*[\r\n\t\x00][ \t]*")


def decode_words(value: str) -> str:
    """Decode every RFC 2047 encoded word in a header value."""
    if "=?" not in value:
        return value
    return "".join(_decoded_pieces(value))


def clean_header_text(value: str) -> str:
    """Unfold: tabs, stray CR/LF and NULs become one space; trim the ends."""
    return _CONTROL.sub(" ", value).strip()


def _decoded_pieces(value: str) -> Iterator[str]:
    pos = 0
    pending: list[tuple[str, bytes]] = []  # adjacent words not yet decoded
    for match in _WORD.finditer(value):
        gap = value[pos : match.start()]
        if gap and not (pending and gap.isspace()):
            yield from _flush(pending)
            yield gap
        charset, payload = match[1], _word_bytes(match[2], match[3])
        if pending and pending[-1][0] != charset.lower():
            yield from _flush(pending)
        pending.append((charset.lower(), payload))
        pos = match.end()
    yield from _flush(pending)
    yield value[pos:]


def _flush(pending: list[tuple[str, bytes]]) -> Iterator[str]:
    if pending:
        yield decode_text(b"".join(p for _, p in pending), pending[0][0])[0]
        pending.clear()


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    if encoding in "bB":
        return b64decode_lenient(data)[0]
    return qp_decode(data, header=True)
