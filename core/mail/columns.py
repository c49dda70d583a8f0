"""The column values of new mail rows, from what the parser read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from core.mail.addresses import Address
from core.mail.headers import MailHeaders
from core.mail.parse import Attachment, MailItem
from core.mail.threads import ThreadInput, subject_key
from core.models import utcnow


def dedupe_key(kind: str, value: str) -> str:
    """The unique key of a message in its mailbox: ``kind`` is ``id`` or ``hash``."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def message_values(
    mailbox: str,
    key: str,
    raw: bytes,
    item: MailItem | MailHeaders,
    key_of_subject: str | None = None,
) -> dict[str, Any]:
    """The columns of a new message row, by attribute name (thread to be set by the caller).

    Given only the ``MailHeaders`` of a message, its bodies and attachments are
    left for later (``body_parsed`` false, see ``core.mail.bodies``), unless
    the headers already could not be read: then there is nothing more to learn.
    ``key_of_subject``: ``subject_key`` of the item, if the caller has it already.
    """
    body = item if isinstance(item, MailItem) else None
    unreadable = not isinstance(item, MailItem) and not item.readable
    return {
        "mailbox": mailbox,
        "dedupe_key": key,
        "message_id": item.message_id,
        "in_reply_to": item.in_reply_to,
        "references": list(item.references),
        "content_hash": item.content_hash,
        "thread_id": "",
        "subject": item.subject or "",
        "subject_key": (
            subject_key(ThreadInput.of(item))[:255] if key_of_subject is None else key_of_subject
        ),
        "from_": addresses_json(item.from_),
        "to": addresses_json(item.to),
        "cc": addresses_json(item.cc),
        "reply_to": addresses_json(item.reply_to),
        "date": item.date,
        "sort_at": item.date or utcnow(),
        "text": body.text if body else None,
        "html": body.html if body else None,
        "size": len(raw),
        "parse_error": item.parse_error,
        "body_parsed": body is not None or unreadable,
    }


def addresses_json(addresses: Iterable[Address]) -> list[dict[str, str]]:
    """Addresses as stored and shown: ``[{"name": ..., "address": ...}]``."""
    return [{"name": a.name, "address": a.address} for a in addresses]


def attachment_values(email_id: int, n: int, part: Attachment) -> dict[str, Any]:
    """The columns of attachment row ``n`` of a message."""
    return {
        "email_id": email_id,
        "n": n,
        "filename": (part.filename or "")[:500] or None,
        "content_type": part.content_type[:200],
        "size": part.size,
        "sha256": part.sha256,
        "inline": part.inline,
        "content_id": (part.content_id or "")[:500] or None,
        "truncated": part.truncated,
    }
