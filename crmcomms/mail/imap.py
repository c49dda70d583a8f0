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
from typing import Any

from crmcomms.mail.imap_responses import (
    FolderInfo,
    ImapAuthError,
    ImapCommandError,
    ImapConnectionError,
    ImapError,
    ImapProtocolError,
    Line,
    ListedFolder,
    Namespace,
    is_change,
    literal_size,
    parse_bodies,
    parse_capabilities,
    parse_examine,
    parse_folders,
    parse_namespace,
    parse_uid_sizes,
    status_folder,
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
    "ListedFolder",
    "Namespace",
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
        self._pending: asyncio.Task[Line] | None = None  # a read an IDLE wait left running
        self.capabilities: frozenset[str] = frozenset()
        self.selected: str | None = None
        #: Folders the server said changed (new or expunged messages) since last looked at:
        #: ``* n EXISTS`` of the selected one, ``* STATUS`` of others (NOTIFY).
        self.notices: set[str] = set()
        #: UIDNEXT of each folder when last examined.
        self.uidnext: dict[str, int | None] = {}

    async def _read(self) -> Line:
        """One response line (the one an IDLE wait left pending first), within the timeout."""
        try:
            # not asyncio.wait_for: on Python 3.11 it returns the result, swallowing the
            # caller's cancellation, when the read completes as the cancel arrives (a
            # stopped mailbox worker then went on IDLEing forever)
            async with asyncio.timeout(self._timeout):
                line = await asyncio.shield(self._reading())
        except TimeoutError as exc:
            raise ImapConnectionError(f"no answer within {self._timeout:.0f} s") from exc
        self._pending = None
        return line

    def _reading(self) -> asyncio.Task[Line]:
        """The read in progress: reads are never cancelled half-way through a response."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._receive())
        return self._pending

    def _note(self, line: Line) -> bool:
        """Remember a folder the line says changed; whether it was such a line."""
        if is_change(line):
            if self.selected is not None:
                self.notices.add(self.selected)
            return True
        if line.text.startswith(b"* STATUS") and (folder := status_folder(line)) is not None:
            self.notices.add(folder)
            return True
        return False

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
                    self._note(line)
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

    async def list_folders(self) -> list[ListedFolder]:
        """Every folder with its attributes (SPECIAL-USE ones such as ``\\Sent`` included)."""
        return parse_folders(await self.command(b'LIST "" "*"'))

    async def namespace(self) -> Namespace:
        """The personal namespace (the root without the NAMESPACE extension)."""
        if "NAMESPACE" not in self.capabilities:
            return Namespace()
        return parse_namespace(await self.command(b"NAMESPACE"))

    async def examine(self, folder: str) -> FolderInfo:
        """Open ``folder`` read-only; what it holds now is no longer news."""
        self.selected = None
        info = parse_examine(folder, await self.command(b"EXAMINE " + quote(folder)))
        self.selected = folder
        self.notices.discard(folder)
        self.uidnext[folder] = info.uidnext
        return info

    async def notify(self, folders: Sequence[str]) -> None:
        """RFC 5465 NOTIFY: new or expunged messages in ``folders`` are announced from now
        on (``* STATUS`` for the folders not selected), flag changes are not."""
        names = b" ".join(quote(folder) for folder in folders)
        events = b"(MessageNew MessageExpunge)"
        await self.command(
            b"NOTIFY SET (selected " + events + b") (mailboxes (" + names + b") " + events + b")"
        )

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

    async def idle(self, timeout: float, wake: asyncio.Event | None = None) -> bool:
        """IDLE until a folder changes (True), or ``wake`` is set or ``timeout`` seconds
        have passed in all (False), however many other lines (flag changes) arrive.

        Servers drop idle clients after 30 minutes (RFC 2177): keep ``timeout``
        below that; the caller re-issues IDLE.
        """
        if wake is not None and wake.is_set():
            return False
        self._tag += 1
        tag = b"A%04d" % self._tag
        await self._send(tag + b" IDLE\r\n")
        try:
            # untagged news may come first (NOTIFY's STATUS sent while we were not reading)
            early = False
            while (line := await self._read()).text.startswith(b"* "):
                early = self._check_idle_line(line) or early
            if not line.text.startswith(b"+"):
                raise ImapCommandError(f"IDLE refused: {line.text.decode(errors='replace')}")
            changed = early or await self._wait_change(timeout, wake)
            await self._send(b"DONE\r\n")
            while not (line := await self._read()).text.startswith(tag + b" "):
                self._check_idle_line(line)
        except BaseException:
            # cancelled or failed once IDLE was sent: the server waits for DONE, and a
            # LOGOUT would not be heard (it waited out the goodbye's 5 s)
            self._broken = True
            raise
        return changed

    async def _wait_change(self, timeout: float, wake: asyncio.Event | None) -> bool:
        """One deadline for the whole wait; a read still running at its end is kept."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        woken = asyncio.ensure_future(wake.wait()) if wake is not None else None
        try:
            while (left := deadline - loop.time()) > 0:
                reading = self._reading()
                waits: set[asyncio.Future[Any]] = {reading}
                if woken is not None:
                    waits.add(woken)
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    return False  # the deadline passed or the caller woke us
                self._pending = None
                if self._check_idle_line(reading.result()):
                    return True
            return False
        finally:
            if woken is not None:
                woken.cancel()

    def _check_idle_line(self, line: Line) -> bool:
        if line.text.startswith(b"* BYE"):
            raise ImapConnectionError("server closed the IDLE connection")
        return self._note(line)

    async def append(self, folder: str, raw: bytes, flags: str = "\\Seen") -> None:
        """Store ``raw`` in ``folder`` (used for the Sent copy of outgoing mail)."""
        command = b"APPEND " + quote(folder) + b" (" + flags.encode() + b") {%d}" % len(raw)
        await self.command(command, literal=raw)

    async def logout(self) -> None:
        """Say goodbye (briefly) and close, ignoring a connection that is already gone."""
        if self._pending is not None and not self._pending.done():
            self._broken = True
        try:
            if not self._broken:
                self._timeout = min(self._timeout, 5.0)
                # one deadline for the whole goodbye: the per-line timeout restarts with
                # every untagged line (NOTIFY keeps sending them), so it alone never ends
                with contextlib.suppress(ImapError, TimeoutError):
                    async with asyncio.timeout(5.0):
                        await self.command(b"LOGOUT")
        finally:  # also when cancelled while saying goodbye: never leave the socket open
            self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(ImapError, asyncio.CancelledError):
                await self._pending


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
