"""Lenient byte-level decoding shared by header and body parsing.

Real mail lies about its charset, splits multi-byte characters across RFC 2047
encoded words and ships base64 with stray characters. Everything here turns
such input into the best text it can and reports whether it had to guess;
nothing here raises for bad input.
"""

from __future__ import annotations

import binascii
import codecs
import re

# Labels that mean "no idea": decode by the fallback chain alone.
_UNKNOWN_LABELS = frozenset(
    {"unknown", "unknown-8bit", "x-unknown", "default", "8bit", "x-user-defined", "none"}
)
# Supersets that real senders mean when they declare the narrower label
# (the same mapping browsers apply, WHATWG Encoding Standard).
_SUPERSETS = {
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "tis-620": "cp874",
    "windows-874": "cp874",
}
# Single-byte western codecs: a body declared as one of these that is valid
# UTF-8 with non-ASCII bytes is UTF-8 mislabelled (the reverse almost never
# decodes as valid UTF-8 by chance).
_WESTERN = frozenset({"cp1252", "iso8859-15", "cp1250", "iso8859-2", "mac-roman"})
# Codecs whose ASCII-only bytes do not mean ASCII text.
_NOT_ASCII_COMPATIBLE = frozenset({"utf-7", "utf-16", "utf-16-le", "utf-16-be", "utf-32"})

_B64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/=]")
_B64_PADDING = re.compile(rb"=+")


def codec_for(label: str | None) -> str | None:
    """Map a declared charset label to a Python codec name, or None if unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    if not name or name in _UNKNOWN_LABELS:
        return None
    name = _SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_text(data: bytes, declared: str | None) -> tuple[str, bool]:
    """Decode ``data`` as text; return ``(text, exact)``.

    Order: the declared charset (via its superset), UTF-8, cp1252, latin-1
    (which never fails). ``exact`` is False when the declared charset was
    missing, unknown or wrong and a fallback produced the text.
    """
    codec = codec_for(declared)
    if data.isascii() and codec not in _NOT_ASCII_COMPATIBLE:
        return data.decode("ascii"), True
    if codec in _WESTERN and _is_utf8(data):
        return data.decode("utf-8"), False
    for index, candidate in enumerate((codec, "utf-8", "cp1252")):
        if candidate is None:
            continue
        try:
            return data.decode(candidate), index == 0
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1"), False


def decode_header_bytes(value: bytes) -> str:
    """Decode a raw header value: ASCII, else UTF-8, else cp1252, else latin-1."""
    if value.isascii():
        return value.decode("ascii")
    return decode_text(value, "utf-8")[0]


def b64decode_lenient(data: bytes) -> tuple[bytes, bool]:
    """Decode base64 ignoring junk characters; return ``(bytes, clean)``.

    Each ``=``-padded run is decoded on its own (some senders concatenate
    separately encoded chunks); a dangling single character is dropped.
    """
    compact = b"".join(data.split())
    cleaned = _B64_ALPHABET.sub(b"", compact)
    clean = cleaned == compact
    chunks = [chunk for chunk in _B64_PADDING.split(cleaned) if chunk]
    out = bytearray()
    for chunk in chunks:
        usable = len(chunk) - len(chunk) % 4 if len(chunk) % 4 == 1 else len(chunk)
        clean = clean and usable == len(chunk)
        piece = chunk[:usable]
        out += binascii.a2b_base64(piece + b"=" * (-len(piece) % 4))
    return bytes(out), clean


def qp_decode(data: bytes, *, header: bool = False) -> bytes:
    """Decode quoted-printable; binascii already tolerates bad escapes."""
    return binascii.a2b_qp(data, header=header)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
