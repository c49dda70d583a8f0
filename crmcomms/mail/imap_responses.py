"""IMAP responses to values: the error hierarchy and the pure parsers of the client.

The server's bytes are not trusted. Every parser here returns a value or raises
:class:`ImapProtocolError`; whatever else a garbled line would make Python
raise (``ValueError`` of ``int()``, ``UnicodeDecodeError``, ``IndexError``...)
is translated once, by :func:`protocol`, with the original as ``__cause__``.
Numbers are RFC 3501 ``number``/``nz-number``: ASCII digits below 2**32 (what
the database's columns hold), and a literal's size is bounded by the caller.

Errors::

    ImapError               base
    ├── ImapConnectionError network, TLS, timeout, BYE: reconnect
    │   └── ImapProtocolError   the server sent what IMAP does not allow: reconnect
    ├── ImapAuthError       the server refused the credentials
    └── ImapCommandError    NO/BAD to a command (names the command)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, ParamSpec, TypeVar

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
_CODE = re.compile(rb"\[([A-Z-]+)(?: ([^\]]*))?\]")
_FETCH = re.compile(rb"^\* \d+ FETCH \(")
_UID = re.compile(rb"[( ]UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_LIST = re.compile(rb'^\* LIST \(([^)]*)\) ("(?:[^"\\]|\\.)*"|NIL) (.*)$')
_STATUS = re.compile(rb"^\* STATUS (.*) \([^()]*\)$")
_NAMESPACE = re.compile(rb'^\* NAMESPACE (?:NIL|\(\("((?:[^"\\]|\\.)*)" ("(?:[^"\\]|\\.)*"|NIL))')
_MAX_NUMBER = 2**32 - 1

P = ParamSpec("P")
R = TypeVar("R")


class ImapError(Exception):
    """Base of every IMAP failure."""


class ImapConnectionError(ImapError):
    """The connection failed, timed out, or the server said BYE."""


class ImapProtocolError(ImapConnectionError):
    """The server sent something IMAP does not allow (a garbled or oversized response)."""


class ImapAuthError(ImapError):
    """The server refused the username or password."""


class ImapCommandError(ImapError):
    """The server answered NO or BAD to a command."""


@dataclass(frozen=True, slots=True)
class Line:
    """One untagged response: its text (literals cut out) and its literals, in order."""

    text: bytes
    literals: tuple[bytes, ...] = ()


class ListedFolder(NamedTuple):
    """A folder as LIST names it: its name, attributes (lower-cased) and hierarchy delimiter."""

    name: str
    flags: frozenset[str]
    delimiter: str | None = None


@dataclass(frozen=True, slots=True)
class Namespace:
    """The personal namespace (RFC 2342): its prefix (``""``, ``"INBOX."``) and delimiter."""

    prefix: str = ""
    delimiter: str | None = None


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """What EXAMINE tells about a folder."""

    name: str
    uidvalidity: int
    exists: int
    uidnext: int | None


def protocol(parse: Callable[P, R]) -> Callable[P, R]:
    """``parse``, with what a garbled response makes it raise turned into ImapProtocolError."""

    @functools.wraps(parse)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return parse(*args, **kwargs)
        except (ValueError, LookupError, TypeError, OverflowError) as exc:
            raise ImapProtocolError(f"{parse.__name__}: unreadable answer: {exc}") from exc

    return checked


def shown(data: bytes) -> str:
    """Server bytes for a message: escaped and cut short."""
    return repr(data[:120])


def number(raw: bytes | None, what: str) -> int:
    """An IMAP number: ASCII digits, below 2**32."""
    if not raw or len(raw) > 10 or not raw.isdigit():
        raise ImapProtocolError(f"{what} is not a number: {shown(raw or b'')}")
    value = int(raw)
    if value > _MAX_NUMBER:
        raise ImapProtocolError(f"{what} out of range: {value}")
    return value


@protocol
def literal_size(line: bytes, maximum: int) -> int | None:
    """The size of the literal announced at the end of ``line`` (``{n}``), if any."""
    match = _LITERAL.search(line)
    if match is None:
        return None
    if len(match[1]) > 12 or int(match[1]) > maximum:
        raise ImapProtocolError(f"literal of {match[1][:20].decode()} bytes, over {maximum}")
    return int(match[1])


@protocol
def parse_capabilities(lines: Sequence[Line]) -> frozenset[str]:
    """The capability atoms of ``* CAPABILITY`` lines (an odd byte gives an odd atom)."""
    words = b" ".join(line.text for line in lines if line.text.startswith(b"* CAPABILITY"))
    return frozenset(words.decode("ascii", "replace").upper().split()[2:])


@protocol
def parse_folders(lines: Sequence[Line]) -> list[ListedFolder]:
    """Every folder of ``* LIST`` lines with its attributes, lower-cased, and delimiter.

    A name that is not UTF-8 cannot be named back to the server: that folder
    is left out (mailbox names are 7-bit modified UTF-7, or UTF-8 with UTF8=ACCEPT).
    """
    folders = []
    for line in lines:
        match = _LIST.match(line.text)
        if match is None:
            continue
        try:
            name = line.literals[0].decode() if line.literals else unquote(match[3])
        except UnicodeDecodeError:
            continue
        flags = frozenset(match[1].decode("ascii", "replace").lower().split())
        delimiter = None if match[2] == b"NIL" else unquote(match[2]) or None
        folders.append(ListedFolder(name, flags, delimiter))
    return folders


@protocol
def parse_namespace(lines: Sequence[Line]) -> Namespace:
    """The first personal namespace of a ``* NAMESPACE`` answer (none: the root, no delimiter)."""
    for line in lines:
        match = _NAMESPACE.match(line.text)
        if match is not None and match[1] is not None:
            prefix = unquote(b'"' + match[1] + b'"')
            return Namespace(prefix, None if match[2] == b"NIL" else unquote(match[2]) or None)
    return Namespace()


def status_folder(line: Line) -> str | None:
    """The folder an unsolicited ``* STATUS`` line (RFC 5465 NOTIFY) is about, if it is one."""
    match = _STATUS.match(line.text)
    if match is None:
        return None
    try:
        return line.literals[0].decode() if line.literals else unquote(match[1])
    except UnicodeDecodeError:
        return None


def unquote(value: bytes) -> str:
    """A mailbox name as LIST returns it (quoted or atom), as text."""
    text = value.decode().strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


@protocol
def parse_examine(folder: str, lines: Sequence[Line]) -> FolderInfo:
    """UIDVALIDITY, EXISTS and UIDNEXT from the answer to EXAMINE."""
    info: dict[str, int] = {}
    for line in lines:
        if line.text.endswith(b" EXISTS"):
            info["EXISTS"] = number(line.text[2:-7], "EXISTS")  # "* <n> EXISTS"
        for code, value in _CODE.findall(line.text):
            if code in (b"UIDVALIDITY", b"UIDNEXT"):
                info[code.decode()] = number(value, code.decode())
    if "UIDVALIDITY" not in info:
        raise ImapCommandError(f"EXAMINE {folder}: server sent no UIDVALIDITY")
    return FolderInfo(folder, info["UIDVALIDITY"], info.get("EXISTS", 0), info.get("UIDNEXT"))


@protocol
def parse_uid_sizes(lines: Sequence[Line], after: int) -> list[tuple[int, int]]:
    """(UID, RFC822.SIZE) of the FETCH lines whose UID is above ``after``, ascending."""
    found = []
    for line in lines:
        if not _FETCH.match(line.text):
            continue
        uid, size = _UID.search(line.text), _SIZE.search(line.text)
        if uid and size and number(uid[1], "UID") > after:
            found.append((number(uid[1], "UID"), number(size[1], "RFC822.SIZE")))
    return sorted(found)


@protocol
def parse_bodies(lines: Sequence[Line], wanted: set[int]) -> list[tuple[int, bytes]]:
    """(UID, raw bytes) of the FETCH BODY[] lines of ``wanted`` messages, by UID."""
    bodies = []
    for line in lines:
        uid = _UID.search(line.text)
        if _FETCH.match(line.text) and uid and line.literals:
            if number(uid[1], "UID") in wanted:
                bodies.append((number(uid[1], "UID"), line.literals[0]))
    return sorted(bodies, key=lambda pair: pair[0])


def is_change(line: Line) -> bool:
    """Whether an untagged line says the selected folder changed (not a mere flag change)."""
    return line.text.endswith((b" EXISTS", b" EXPUNGE"))
