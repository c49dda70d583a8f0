"""Address header values to Address tuples.

The common shapes (``a@b``, ``Name <a@b>``, ``"Last, First" <a@b>``, lists
of them) are read by one regular expression; anything else (groups,
comments, odd quoting) goes to the stdlib ``getaddresses``, which is exact
but about ten times slower. Encoded words in names are decoded after the
list is split, so a comma inside one cannot split an address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import getaddresses

from core.mail.words import clean_header_text, decode_words

_ITEM = re.compile(
    r"""\s*(?:
        (?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<plain>[^",<>;:()\\]*?))\s*<(?P<angle>[^<>\s"]*)>
        |(?P<bare>[^\s,<>";:()\\]+)
    )\s*(?:,|\Z)""",
    re.VERBOSE,
)
_QUOTED_PAIR = re.compile(r"\\(.)")
# An encoded word with a raw list special inside; hidden from getaddresses.
_SPECIAL_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?]*[,;<>@()\[\]\":][^?]*\?=")
_PLACEHOLDER = re.compile(r"ENCODEDWORD(\d+)X")


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: display name (decoded, may be empty) and lower-cased address."""

    name: str
    address: str


def parse_addresses(values: Sequence[str]) -> tuple[Address, ...]:
    """Addresses of one or more header values; names decoded, addresses lower-cased,
    duplicates and empty addresses dropped."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        pairs.extend(_fast_pairs(value) or _stdlib_pairs(value))
    return tuple(dict.fromkeys(_address(name, address) for name, address in pairs if address))


def _address(name: str, address: str) -> Address:
    return Address(" ".join(clean_header_text(decode_words(name)).split()), address.lower())


def _fast_pairs(value: str) -> list[tuple[str, str]] | None:
    if "=?" in value and _SPECIAL_WORD.search(value):
        return None
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(value.rstrip())
    while pos < end:
        match = _ITEM.match(value, pos)
        if match is None:
            return None
        if match["bare"] is not None:
            pairs.append(("", match["bare"]))
        else:
            name = match["plain"] or _QUOTED_PAIR.sub(r"\1", match["quoted"] or "")
            pairs.append((name, match["angle"].strip()))
        pos = match.end()
    return pairs


def _stdlib_pairs(value: str) -> Iterable[tuple[str, str]]:
    words: list[str] = []

    def hide(match: re.Match[str]) -> str:
        words.append(match[0])
        return f"ENCODEDWORD{len(words) - 1}X"

    for name, address in getaddresses([_SPECIAL_WORD.sub(hide, value)]):
        yield _PLACEHOLDER.sub(lambda m: words[int(m[1])], name), address.strip()
