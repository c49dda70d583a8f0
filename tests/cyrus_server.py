"""Cyrus IMAP, the tests' second real IMAP server, run from Debian's packages unpacked.

Debian's ``cyrus-imapd`` and ``dovecot-imapd`` conflict as packages, so Cyrus is
not installed: :func:`cyrus_binaries` fetches ``cyrus-imapd``, ``cyrus-common``
and the libraries they need that a machine with Dovecot lacks (``apt-get
download``), unpacks them with ``dpkg-deb -x`` into a cache directory once,
and the binaries run from there with ``LD_LIBRARY_PATH``.

:func:`run_cyrus` starts Cyrus's ``master`` in the foreground with a private
``imapd.conf`` and ``cyrus.conf`` in a temp dir: ``imapd`` on a free loopback
port and, unless told otherwise, ``idled`` (without it, Cyrus's IDLE only
looks for new mail every ``imapidlepoll`` seconds, Debian's default setup).
The layout is Debian's: the ``.`` hierarchy with the personal namespace
``INBOX.`` (``INBOX.Sent``; ``altnamespace: no``). Every login name is a user
(SASL ``alwaystrue``: any password), whose INBOX and ``INBOX.Sent`` Cyrus
creates at the first login, so one server serves a whole test session, each
test with a user of its own (:meth:`CyrusServer.fresh_user`).

Cyrus logs to syslog only; there is none in the test machines, so a failing
start is diagnosed from the exit code (``master`` exits 71/75/78 on config
and permission problems).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import grp
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.mail_servers import ImapServer, free_port, kill_group, wait_for_port

#: What apt-get download fetches: Cyrus itself and the libraries a Dovecot machine lacks.
PACKAGES = ("cyrus-imapd", "cyrus-common", "libical3", "libpcre3", "libxapian30")
#: Where the unpacked packages are kept between runs (readable by the unprivileged user
#: Cyrus runs as when the tests run as root, unlike root's home).
CACHE = Path(
    os.environ.get("CRMCOMMS_CYRUS_DIR")
    or Path(tempfile.gettempdir()) / f"crmcomms-cyrus-{os.geteuid()}"
)
BIN = "usr/lib/cyrus/bin"
LIBS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")

_IMAPD_CONF = """\
configdirectory: {root}/conf
partition-default: {root}/spool
proc_path: {root}/conf/proc
mboxname_lockpath: {root}/conf/lock
idlesocket: {root}/conf/socket/idle
notifysocket: {root}/conf/socket/notify
lmtpsocket: {root}/conf/socket/lmtp
sievedir: {root}/conf/sieve
cyrus_user: {user}
cyrus_group: {group}
admins: cyrus
altnamespace: no
unixhierarchysep: no
allowplaintext: yes
sasl_pwcheck_method: alwaystrue
autocreate_quota: 0
autocreate_inbox_folders: Sent
imapidlepoll: 60
syslog_prefix: crmcomms-test-cyrus
"""

_CYRUS_CONF = """\
SERVICES {{
  imap cmd="{bin}/imapd -C {root}/imapd.conf" listen="127.0.0.1:{port}" prefork=0
}}
EVENTS {{
}}
DAEMON {{
{daemons}}}
"""
_IDLED = '  idled cmd="{bin}/idled -C {root}/imapd.conf"\n'


@dataclass
class CyrusServer(ImapServer):
    """A running private Cyrus IMAP (see the module docstring)."""

    sent: str = "INBOX.Sent"
    prefix: str = "INBOX."
    idled: bool = True
    _users: Iterator[int] = field(default_factory=itertools.count, repr=False)

    def fresh_user(self) -> CyrusServer:
        """The same server seen by a new user with an empty INBOX and INBOX.Sent."""
        user = f"{self.user.split('-')[0]}-{next(self._users)}"
        view = dataclasses.replace(self, user=user, _users=self._users)
        view.client().logout()  # the first login creates the user's folders
        return view


def cyrus_binaries(cache: Path = CACHE) -> Path:
    """The directory Cyrus's packages are unpacked in; fetched and unpacked on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes unpack once
        root = cache / "root"
        if not (root / BIN / "master").exists():
            _fetch(cache, root)
    return root


def _fetch(cache: Path, root: Path) -> None:
    debs = Path(tempfile.mkdtemp(prefix="debs-", dir=cache))
    try:
        done = subprocess.run(
            ["apt-get", "download", *PACKAGES], cwd=debs, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"apt-get download {' '.join(PACKAGES)} failed: {done.stderr}")
        unpacking = Path(tempfile.mkdtemp(prefix="root-", dir=cache))
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacking)], check=True)
        unpacking.chmod(0o755)
        unpacking.rename(root)
    finally:
        shutil.rmtree(debs, ignore_errors=True)


def _environment(binaries: Path) -> dict[str, str]:
    libs = ":".join(str(binaries / lib) for lib in LIBS)
    return {**os.environ, "LD_LIBRARY_PATH": libs}


def missing_libraries(binaries: Path) -> list[str]:
    """Shared libraries Cyrus's daemons need that neither the system nor the cache has."""
    missing: set[str] = set()
    for daemon in ("master", "imapd", "idled"):
        out = subprocess.run(
            ["ldd", str(binaries / BIN / daemon)],
            env=_environment(binaries),
            capture_output=True,
            text=True,
        ).stdout
        missing |= {line.split()[0] for line in out.splitlines() if "not found" in line}
    return sorted(missing)


def _owner() -> tuple[str, str]:
    """The (user, group) Cyrus runs as: ``nobody`` as root, else whoever runs the tests."""
    if os.geteuid() == 0:
        return "nobody", "nogroup"
    me = pwd.getpwuid(os.geteuid())
    return me.pw_name, grp.getgrgid(me.pw_gid).gr_name


def _prepare(root: Path, binaries: Path, port: int, idled: bool) -> None:
    user, group = _owner()
    for sub in ("conf/db", "conf/proc", "conf/socket", "conf/lock", "conf/sieve", "spool"):
        (root / sub).mkdir(parents=True)
    bin_dir = binaries / BIN
    (root / "imapd.conf").write_text(_IMAPD_CONF.format(root=root, user=user, group=group))
    daemons = _IDLED.format(bin=bin_dir, root=root) if idled else ""
    (root / "cyrus.conf").write_text(
        _CYRUS_CONF.format(bin=bin_dir, root=root, port=port, daemons=daemons)
    )
    for path in [root, *root.rglob("*")]:
        shutil.chown(path, user, group)


@contextlib.contextmanager
def run_cyrus(idled: bool = True) -> Iterator[CyrusServer]:
    """Start a private Cyrus on a free loopback port; stop it and remove its files after."""
    binaries = cyrus_binaries()
    if missing := missing_libraries(binaries):
        raise RuntimeError(f"Cyrus cannot start, libraries not found: {', '.join(missing)}")
    root = Path(tempfile.mkdtemp(prefix="crmcomms-cyrus-"))
    root.chmod(0o755)
    server = CyrusServer(root=root, port=free_port(), idled=idled)
    _prepare(root, binaries, server.port, idled)
    command = [str(binaries / BIN / "master"), "-C", str(root / "imapd.conf")]
    command += ["-M", str(root / "cyrus.conf"), "-p", str(root / "master.pid"), "-D"]
    process = subprocess.Popen(
        command, env=_environment(binaries), stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        try:
            wait_for_port(server.port)
        except TimeoutError:
            kill_group(process)
            raise RuntimeError(f"Cyrus master did not start (exit {process.returncode})") from None
        yield server
    finally:
        kill_group(process)
        shutil.rmtree(root, ignore_errors=True)
