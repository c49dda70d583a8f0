"""Real mail servers for the tests: a private Dovecot and an aiosmtpd sink on loopback
(Cyrus, the second IMAP server, is in tests/cyrus_server.py).

Dovecot runs in the foreground (``dovecot -F -c <conf>``) with its whole state
in a temp dir: passwd-file users, maildirs, sockets and its log. As root (CI)
the mail belongs to the unprivileged ``dovecot`` user; as a normal user,
everything runs as that user. Messages are put into folders with stdlib
imaplib (APPEND), as any client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

_CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = {gid}
mail_location = maildir:{root}/mail/%u
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 2 mins
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Archive {{
    auto = create
  }}
}}
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Wait until 127.0.0.1:port accepts connections; fail loudly after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.02)  # polling a port that is coming up, not waiting for a result


@dataclass
class ImapServer:
    """A running private IMAP server with one user (Dovecot, or Cyrus: tests/cyrus_server.py)."""

    root: Path
    port: int
    user: str = "crm"
    password: str = "secret-pw"
    host: str = "127.0.0.1"
    #: The folder where mail clients file what they sent (as this server names it).
    sent: str = "Sent"
    #: The personal namespace's prefix: ``Archive`` is ``INBOX.Archive`` on Cyrus.
    prefix: str = ""

    def client(self) -> imaplib.IMAP4:
        """A logged-in stdlib IMAP client (the tests' way to put mail in)."""
        imap = imaplib.IMAP4(self.host, self.port)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX", flags: str = "") -> None:
        """Deliver ``raw`` into ``folder``."""
        imap = self.client()
        try:
            status, data = imap.append(folder, flags or None, None, raw)
            assert status == "OK", data
        finally:
            imap.logout()

    def append_many(self, messages: list[bytes], folder: str = "INBOX") -> None:
        """Deliver several messages over one connection."""
        imap = self.client()
        try:
            for raw in messages:
                status, data = imap.append(folder, None, None, raw)
                assert status == "OK", data
        finally:
            imap.logout()

    def create(self, folder: str) -> None:
        """Create ``folder`` (for servers that do not create it on their own)."""
        imap = self.client()
        try:
            status, data = imap.create(folder)
            assert status == "OK", data
        finally:
            imap.logout()

    def recreate(self, folder: str) -> None:
        """Delete and create ``folder`` again: it gets a new UIDVALIDITY, UIDs restart."""
        imap = self.client()
        try:
            assert imap.delete(folder)[0] == "OK"
            assert imap.create(folder)[0] == "OK"
        finally:
            imap.logout()

    def flags(self, folder: str = "INBOX") -> list[bytes]:
        """The FLAGS of every message in ``folder`` (to prove nothing was marked read)."""
        imap = self.client()
        try:
            imap.select(folder, readonly=True)
            status, data = imap.fetch("1:*", "(FLAGS)")
            return [d for d in data if isinstance(d, bytes)] if status == "OK" else []
        finally:
            imap.logout()

    def log(self) -> str:
        """The server's log, for failure messages (empty when it logs to syslog)."""
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


class DovecotServer(ImapServer):
    """A running private Dovecot with one user."""


def _users() -> tuple[str, str, int, int]:
    """(internal user, login user, mail uid, mail gid) suiting who runs the tests."""
    if os.geteuid() == 0:
        mail = pwd.getpwnam("dovecot")
        return "dovecot", "dovenull", mail.pw_uid, mail.pw_gid
    me = pwd.getpwuid(os.geteuid())
    return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid


@contextlib.contextmanager
def run_dovecot() -> Iterator[DovecotServer]:
    """Start a private Dovecot on a free loopback port; stop it and remove its files after."""
    root = Path(tempfile.mkdtemp(prefix="crmcomms-dovecot-"))
    root.chmod(0o755)  # the unprivileged dovecot processes must reach the passwd file
    internal, login, uid, gid = _users()
    server = DovecotServer(root=root, port=free_port())
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir()
    for sub in ("mail", "home"):
        os.chown(root / sub, uid, gid)
    (root / "passwd").write_text(f"{server.user}:{{PLAIN}}{server.password}::::::\n")
    conf = root / "dovecot.conf"
    conf.write_text(
        _CONF.format(root=root, port=server.port, internal=internal, login=login, uid=uid, gid=gid)
    )
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        try:
            wait_for_port(server.port)
        except TimeoutError:
            kill_group(process)
            raise RuntimeError(f"dovecot did not start: {server.log()}") from None
        yield server
    finally:
        kill_group(process)
        shutil.rmtree(root, ignore_errors=True)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session and its children at once (a clean
    SIGTERM takes a second)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if process.stderr is not None:
        process.stderr.close()


@contextlib.contextmanager
def flag_changes(server: ImapServer, every: float = 0.5, folder: str = "INBOX") -> Iterator[None]:
    """Another client toggling ``\\Flagged`` on message 1 of ``folder`` every ``every``
    seconds (an agent reading mail in Thunderbird), until the block ends."""
    stop = threading.Event()
    imap = server.client()
    imap.select(folder)

    def toggle() -> None:
        sign = "+"
        while not stop.wait(every):  # the pace of the load, not a wait for a result
            imap.store("1", f"{sign}FLAGS", "\\Flagged")
            sign = "-" if sign == "+" else "+"

    thread = threading.Thread(target=toggle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        imap.logout()


@dataclass
class Received:
    """One message the SMTP sink accepted."""

    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class SinkHandler:
    """aiosmtpd handler: stores messages, or answers 4xx/5xx when told to."""

    mode: str = "accept"  # "accept" | "tempfail" | "reject"
    messages: list[Received] = field(default_factory=list)
    attempts: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.changed:
            self.attempts += 1
            if self.mode == "tempfail":
                self.changed.notify_all()
                return "451 4.3.0 mailbox temporarily unavailable, try later"
            if self.mode == "reject":
                self.changed.notify_all()
                return "550 5.1.1 no such user here"
            content = envelope.original_content or b""
            rcpts = list(envelope.rcpt_tos)
            self.messages.append(Received(str(envelope.mail_from), rcpts, content))
            self.changed.notify_all()
        return "250 2.0.0 OK queued"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a loopback port that can be stopped and restarted."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler()
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen (again) on the same port."""
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, auth_require_tls=False
        )
        self._controller.start()

    def stop(self) -> None:
        """Stop listening: clients get connection refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


@contextlib.contextmanager
def run_smtp(started: bool = True) -> Iterator[SmtpSink]:
    """An SMTP sink, started unless ``started`` is false; stopped on exit."""
    sink = SmtpSink()
    if started:
        sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@contextlib.asynccontextmanager
async def running(
    worker: Callable[[], Coroutine[Any, Any, None]],
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker()`` as a task for the block; cancel it and wait for it after."""
    task = asyncio.create_task(worker())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TcpCutter:
    """A loopback TCP proxy to ``target_port`` that cuts its n-th connection after
    ``cut_after[n]`` bytes from the server (later connections pass untouched)."""

    def __init__(self, target_port: int, cut_after: list[int]) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.port = 0
        self.cuts = 0
        self._connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TcpCutter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index, self._connections = self._connections, self._connections + 1
        limit = self.cut_after[index] if index < len(self.cut_after) else None
        self._writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(up_writer)
        pair = (writer, up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer, None, pair), self._pipe(up_reader, writer, limit, pair)
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limit: int | None,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        passed = 0
        with contextlib.suppress(OSError):
            while data := await reader.read(16384):
                if limit is not None and passed + len(data) > limit:
                    writer.write(data[: limit - passed])
                    self.cuts += 1
                    break
                passed += len(data)
                writer.write(data)
                await writer.drain()
        for each in pair:
            each.transport.abort()
