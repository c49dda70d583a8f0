"""Private files: the database and the mail it holds are readable by the daemon's user only.

Directories we create are 0700 and files 0600, whatever the umask allows
beyond that (a stricter umask is kept). Existing directories are left as the
administrator made them; an existing database file readable by others (as
versions before this one created it) is made private.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700; an existing one is kept as is."""
    if path.is_dir():
        return
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=PRIVATE_DIR)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if missing; if it exists, take group and others' bits off."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            os.fchmod(fd, mode & ~0o077)
    finally:
        os.close(fd)
