"""An e-mail as JSON: one shape for the push (``email.*``), the API and the history.

:func:`email_json` builds it from a stored message: the list items of
``GET /api/emails``, the entries of a contact's history, the ``email`` of every
``email.*`` event and the answer of ``POST /api/emails`` are this, and
``GET /api/emails/{id}`` adds the bodies and attachments to it
(:func:`email_detail_json`). The browser renders it as it comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.mail.models import EmailAttachment, EmailContact, EmailMessage
from core.mail.preview import preview
from core.mail.sanitize import sanitize_html
from core.times import json_time


def email_json(message: EmailMessage, contacts: Sequence[int]) -> dict[str, Any]:
    """THE e-mail in JSON; ``contacts``: the ids of the contacts it is linked to.

    ``date`` is the Date header (null when missing or unreadable), ``sort_at``
    when it was sent or received (the Date header, else when we stored it);
    ``state`` and ``error`` are the outbox's (null for received mail);
    ``body_parsed`` false while the body is still being parsed (no ``preview`` yet).
    """
    return {
        "id": message.id,
        "mailbox": message.mailbox,
        "message_id": message.message_id,
        "thread_id": message.thread_id,
        "subject": message.subject,
        "from": message.from_,
        "to": message.to,
        "cc": message.cc,
        "date": json_time(message.date),
        "sort_at": json_time(message.sort_at),
        "direction": message.direction,
        "state": message.state,
        "error": message.error,
        "parse_error": message.parse_error,
        "body_parsed": message.body_parsed,
        "preview": preview(message.text),
        "contacts": sorted(contacts),
    }


def emails_json(session: Session, messages: Sequence[EmailMessage]) -> list[dict[str, Any]]:
    """:func:`email_json` of each message, their contacts read in one query."""
    ids = [message.id for message in messages]
    linked: dict[int, list[int]] = {}
    if ids:
        rows = session.execute(
            select(EmailContact.email_id, EmailContact.contact_id).where(
                EmailContact.email_id.in_(ids)
            )
        )
        for email_id, contact_id in rows:
            linked.setdefault(email_id, []).append(contact_id)
    return [email_json(message, linked.get(message.id, [])) for message in messages]


def stored_email_json(session: Session, email_id: int) -> dict[str, Any]:
    """:func:`email_json` of a message as stored now (re-read, whatever the session holds)."""
    message = session.get_one(EmailMessage, email_id, populate_existing=True)
    return emails_json(session, [message])[0]


def email_detail_json(
    message: EmailMessage, contacts: Sequence[int], attachments: Sequence[EmailAttachment]
) -> dict[str, Any]:
    """One e-mail with its bodies (HTML sanitised) and attachments: :func:`email_json` and more."""
    return {
        **email_json(message, contacts),
        "in_reply_to": message.in_reply_to,
        "references": message.references,
        "reply_to": message.reply_to,
        "text": message.text,
        "html": sanitize_html(message.html) if message.html else None,
        "attachments": [part.to_json() for part in attachments],
    }
