"""A small IMAP4rev1 client on asyncio streams: just what the mailbox sync needs.

Why not aioimaplib: its response handler recurses once per response line
(``RecursionError`` on large FETCH responses) and re-joins buffers, which
makes a 10,000-message initial fetch about 6x slower than stdlib imaplib;
stdlib imaplib blocks and (before 3.14) has no IDLE. IMAP's framing is
simple enough to read directly: a response is a line, and a line ending in
``{n}`` is followed by exactly ``n`` bytes of literal and more of the line.

Every library and socket exception is translated here, once, and every
garbled answer by the parsers of :mod:`crmcomms.mail.imap_responses` (a
literal's size is bounded by ``Endpoint.max_literal``), into::

    ImapError               base
    ├── ImapConnectionError network, TLS, timeout, BYE: reconnect
    │   └── ImapProtocolError   a garbled or oversized answer: reconnect
    ├── ImapAuthError       the server refused the credentials
    └── ImapCommandError    NO/BAD to a command (names the command)

Only read-only commands touch messages: folders are opened with EXAMINE and
bodies fetched with ``BODY.PEEK[]``, so nothing is ever marked read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from crmcomms.mail.imap_responses import (
    FolderInfo,
    ImapAuthError,
    ImapCommandError,
    ImapConnectionError,
    ImapError,
    ImapProtocolError,
    Line,
    is_change,
    literal_size,
    parse_bodies,
    parse_capabilities,
    parse_examine,
    parse_folders,
    parse_uid_sizes,
)

__all__ = [
    "Endpoint",
    "FolderInfo",
    "ImapAuthError",
    "ImapClient",
    "ImapCommandError",
    "ImapConnectionError",
    "ImapError",
    "ImapProtocolError",
    "Line",
    "connect",
]

_TAGGED = re.compile(rb"^(A\d+) (OK|NO|BAD) ?(.*)$", re.DOTALL)
_LINE_LIMIT = 64 * 2**20
#: The largest literal (in practice: message) accepted; a bigger one is a protocol error.
DEFAULT_MAX_LITERAL = 128 * 2**20


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect and log in."""

    host: str
    port: int
    tls: str  # "implicit" | "starttls" | "none"
    username: str
    password: str
    timeout: float = 60.0
    max_literal: int = DEFAULT_MAX_LITERAL


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (plain-text IMAP is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def quote(value: str) -> bytes:
    """An IMAP quoted string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'.encode()


class ImapClient:
    """One logged-in connection. Use :func:`connect`; commands run one at a time."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        max_literal: int = DEFAULT_MAX_LITERAL,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._tag = 0
        self._timeout = timeout
        self._max_literal = max_literal
        self._broken = False
        self.capabilities: frozenset[str] = frozenset()

    async def _read(self) -> Line:
        """One response line, within the connection's timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._receive()
        except TimeoutError as exc:
            raise ImapConnectionError(f"no answer within {self._timeout:.0f} s") from exc

    async def _receive(self) -> Line:
        parts: list[bytes] = []
        literals: list[bytes] = []
        budget = self._max_literal  # for all the literals of one response
        try:
            while True:
                line = await self._reader.readuntil(b"\r\n")
                size = literal_size(line, budget)
                if size is None:
                    parts.append(line[:-2])
                    return Line(b"".join(parts), tuple(literals))
                parts.append(line[: line.rindex(b"{")])
                literals.append(await self._reader.readexactly(size))
                budget -= size
        except ImapProtocolError:
            self._broken = True  # the rest of the stream cannot be framed any more
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self._broken = True
            raise ImapConnectionError(f"connection lost: {exc!r}") from exc

    async def _send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            self._broken = True
            raise ImapConnectionError(f"connection lost: {exc!r}") from exc

    async def command(self, command: bytes, literal: bytes | None = None) -> list[Line]:
        """Run one command; its untagged responses, or ImapCommandError on NO/BAD.

        The timeout is for silence: each response line pushes the deadline out
        (one timer per command, moved at most twice per timeout: a FETCH of 500
        messages is a thousand lines, and a timer per line cost more than the
        parsing).
        """
        self._tag += 1
        tag = b"A%04d" % self._tag
        await self._send(tag + b" " + command + b"\r\n")
        untagged: list[Line] = []
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout) as timer:
                while True:
                    line = await self._receive()
                    now = loop.time()
                    if (timer.when() or now) - now < self._timeout / 2:
                        timer.reschedule(now + self._timeout)
                    if line.text.startswith(b"+") and literal is not None:
                        await self._send(literal + b"\r\n")
                        literal = None
                        continue
                    if line.text.startswith(tag + b" "):
                        return self._finish(command, line, untagged)
                    self._check_bye(command, line)
                    untagged.append(line)
        except TimeoutError as exc:
            raise ImapConnectionError(f"no answer within {self._timeout:.0f} s") from exc

    def _check_bye(self, command: bytes, line: Line) -> None:
        if line.text.startswith(b"* BYE") and not command.startswith(b"LOGOUT"):
            self._broken = True
            raise ImapConnectionError(f"server closed: {line.text.decode(errors='replace')}")

    def _finish(self, command: bytes, line: Line, untagged: list[Line]) -> list[Line]:
        match = _TAGGED.match(line.text)
        if match is not None and match[2] == b"OK":
            return untagged
        verb = command.split(b" ", 2)[:2] if command.startswith(b"UID") else command.split()[:1]
        name = b" ".join(verb).decode()
        reason = line.text.decode("utf-8", "replace").split(" ", 2)[-1]
        if name in ("LOGIN", "AUTHENTICATE"):
            raise ImapAuthError(f"login refused: {reason}")
        raise ImapCommandError(f"{name} failed: {reason}")

    async def greeting(self) -> None:
        """Read the server's greeting."""
        line = await self._read()
        if not line.text.startswith((b"* OK", b"* PREAUTH")):
            raise ImapConnectionError(f"unexpected greeting: {line.text[:200]!r}")

    async def starttls(self, host: str) -> None:
        """Upgrade the connection to TLS (certificate and host name verified)."""
        await self.command(b"STARTTLS")
        try:
            await self._writer.start_tls(ssl.create_default_context(), server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            self._broken = True
            raise ImapConnectionError(f"STARTTLS failed: {exc!r}") from exc

    async def login(self, username: str, password: str) -> None:
        """LOGIN, then learn the capabilities."""
        await self.command(b"LOGIN " + quote(username) + b" " + quote(password))
        self.capabilities = parse_capabilities(await self.command(b"CAPABILITY"))

    async def list_folders(self) -> list[tuple[str, frozenset[str]]]:
        """Every folder with its attributes (SPECIAL-USE ones such as ``\\Sent`` included)."""
        return parse_folders(await self.command(b'LIST "" "*"'))

    async def examine(self, folder: str) -> FolderInfo:
        """Open ``folder`` read-only."""
        return parse_examine(folder, await self.command(b"EXAMINE " + quote(folder)))

    async def uid_sizes(self, after: int) -> list[tuple[int, int]]:
        """(UID, size) of every message with a UID above ``after``, ascending.

        ``UID FETCH n:*`` also returns the highest message when its UID is
        below n (``*`` is the highest UID, and a range is unordered): those
        are dropped here, so the newest mail is not fetched on every poll.
        """
        lines = await self.command(b"UID FETCH %d:* (UID RFC822.SIZE)" % (after + 1))
        return parse_uid_sizes(lines, after)

    async def fetch_bodies(self, uids: Sequence[int]) -> list[tuple[int, bytes]]:
        """The raw bytes of these messages (``BODY.PEEK[]``: the \\Seen flag is not set).

        Messages expunged meanwhile are simply missing from the result.
        """
        uid_set = b",".join(b"%d" % uid for uid in uids)
        lines = await self.command(b"UID FETCH " + uid_set + b" (UID BODY.PEEK[])")
        return parse_bodies(lines, set(uids))

    async def idle(self, timeout: float) -> bool:
        """IDLE until the folder changes (True) or ``timeout`` seconds pass (False).

        Servers drop idle clients after 30 minutes (RFC 2177): keep ``timeout``
        below that; the caller re-issues IDLE.
        """
        self._tag += 1
        tag = b"A%04d" % self._tag
        await self._send(tag + b" IDLE\r\n")
        line = await self._read()
        if not line.text.startswith(b"+"):
            raise ImapCommandError(f"IDLE refused: {line.text.decode(errors='replace')}")
        try:
            changed = await self._wait_change(timeout)
            await self._send(b"DONE\r\n")
            while not (await self._read()).text.startswith(tag + b" "):
                pass
        except BaseException:
            self._broken = True  # cancelled or failed inside IDLE: LOGOUT would not be heard
            raise
        return changed

    async def _wait_change(self, timeout: float) -> bool:
        saved, self._timeout = self._timeout, timeout
        try:
            while True:
                line = await self._read()
                if line.text.startswith(b"* BYE"):
                    raise ImapConnectionError("server closed the IDLE connection")
                if is_change(line):
                    return True
        except ImapConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                return False
            raise
        finally:
            self._timeout = saved

    async def append(self, folder: str, raw: bytes, flags: str = "\\Seen") -> None:
        """Store ``raw`` in ``folder`` (used for the Sent copy of outgoing mail)."""
        command = b"APPEND " + quote(folder) + b" (" + flags.encode() + b") {%d}" % len(raw)
        await self.command(command, literal=raw)

    async def logout(self) -> None:
        """Say goodbye (briefly) and close, ignoring a connection that is already gone."""
        if not self._broken:
            self._timeout = min(self._timeout, 5.0)
            with contextlib.suppress(ImapError):
                await self.command(b"LOGOUT")
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()


async def _open(endpoint: Endpoint) -> ImapClient:
    context = ssl.create_default_context()
    if endpoint.tls == "none" and not is_loopback(endpoint.host):
        raise ImapConnectionError(f"plain-text IMAP refused for non-loopback {endpoint.host}")
    implicit = context if endpoint.tls == "implicit" else None
    try:
        async with asyncio.timeout(endpoint.timeout):
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=implicit, limit=_LINE_LIMIT
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        where = f"{endpoint.host}:{endpoint.port}"
        raise ImapConnectionError(f"cannot connect to {where}: {exc!r}") from exc
    return ImapClient(reader, writer, endpoint.timeout, endpoint.max_literal)


@contextlib.asynccontextmanager
async def connect(endpoint: Endpoint) -> AsyncIterator[ImapClient]:
    """A logged-in client, logged out (or just closed) on exit."""
    client = await _open(endpoint)
    try:
        await client.greeting()
        if endpoint.tls == "starttls":
            await client.starttls(endpoint.host)
        await client.login(endpoint.username, endpoint.password)
        yield client
    finally:
        await client.logout()
