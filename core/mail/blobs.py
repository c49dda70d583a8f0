"""Content-addressed file store for attachments: ``<root>/aa/bb/<sha256>``.

Each content is stored once, whatever the number of messages holding it.
Writes are atomic (temporary file in the same directory, then rename), so a
reader never sees half a file. They are not fsynced: the raw message in the
database is the source of truth, and an attachment whose file is missing or
damaged after a power loss is extracted again from it (``read`` verifies the
hash and returns None when the file cannot be trusted).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from core.files import make_private_dir


class BlobStore:
    """Files named by the SHA-256 of their content, below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives (whether or not it exists)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, content: bytes, sha256: str | None = None) -> str:
        """Store ``content`` unless already there; returns its SHA-256."""
        digest = sha256 or hashlib.sha256(content).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        make_private_dir(target.parent)  # files are 0600 (mkstemp), directories 0700
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def read(self, sha256: str) -> bytes | None:
        """The blob's content, or None when it is missing or does not match its hash."""
        try:
            content = self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(content).hexdigest() != sha256:
            return None
        return content
