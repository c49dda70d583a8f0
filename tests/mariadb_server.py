"""A throw-away MariaDB server on loopback for the tests (Debian's ``mariadb-server``).

``mariadb-install-db`` makes a data dir in a temp dir, ``mariadbd`` runs on a
free port with grant tables off (any user, no password, loopback only) and is
ready when it says so on stderr. As root the server runs as the ``mysql`` user
in a directory it owns. Skipped only when the binaries are not installed.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

MARIADBD = shutil.which("mariadbd") or shutil.which("mysqld", path="/usr/sbin:/usr/bin")
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
READY = b"ready for connections"


@dataclass(frozen=True)
class MariaDbServer:
    """A running server: connect as any user to 127.0.0.1:``port``."""

    port: int

    def url(self, database: str) -> str:
        return f"mysql://crm@127.0.0.1:{self.port}/{database}"

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run statements with the blocking client (setup only)."""
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=database)
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
            conn.commit()
        finally:
            conn.close()


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Read the server's stderr until it is ready; fail with its log otherwise."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while READY not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"mariadbd not ready within {timeout} s:\n{seen.decode()}")
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"mariadbd exited ({proc.wait()}):\n{seen.decode()}")
            seen += chunk


def _drain(fd: int) -> None:
    while os.read(fd, 65536):
        pass


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDbServer]:
    """Start a real MariaDB server for the session."""
    if MARIADBD is None or INSTALL_DB is None:
        pytest.skip("mariadb-server is not installed (apt-get install -y mariadb-server)")
    base = Path(tempfile.mkdtemp(prefix="crmcomms-mariadb-"))
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(base, "mysql")
    data = base / "data"
    subprocess.run(
        [INSTALL_DB, "--no-defaults", f"--datadir={data}", *user, "--skip-test-db"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            MARIADBD,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={base / 'mysqld.sock'}",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--skip-grant-tables",
            "--innodb-buffer-pool-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    # after "ready", keep reading (and dropping) its log so it never blocks on a full pipe
    drain = threading.Thread(target=_drain, args=(proc.stderr.fileno(),), daemon=True)
    try:
        _wait_ready(proc)
        drain.start()
        yield MariaDbServer(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if drain.is_alive():
            drain.join(timeout=10)
        proc.stderr.close()
        shutil.rmtree(base, ignore_errors=True)
