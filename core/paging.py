"""Keyset paging cursors: the opaque text a client gets as ``next`` and sends back as
``before``. One codec for every newest-first list (e-mails, a contact's timeline)."""

from __future__ import annotations

import base64
from datetime import datetime


def encode_cursor(at: datetime, *keys: str | int) -> str:
    """``at`` (aware) and the tie-breaking keys after it, as URL-safe text."""
    text = "|".join([at.isoformat(), *map(str, keys)]).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(raw: str, keys: int) -> tuple[datetime, list[str]]:
    """The time and the ``keys`` key texts of a cursor from :func:`encode_cursor`;
    ValueError for anything else (a cursor is client input)."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        at, *parts = text.split("|")
        moment = datetime.fromisoformat(at)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a cursor: {exc}") from exc
    if len(parts) != keys or moment.tzinfo is None:
        raise ValueError("not a cursor")
    return moment, parts
