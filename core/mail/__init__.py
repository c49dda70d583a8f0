"""E-mail without I/O: MIME parsing, threading and HTML sanitising.

Raw message bytes come in from the mailbox worker; ``parse_headers`` (cheap)
and ``parse_message`` (full) turn them into frozen values, ``assign_thread``
places them in a conversation, ``sanitize_html`` makes their HTML safe to show.
"""

from core.mail.addresses import Address
from core.mail.headers import MailHeaders
from core.mail.parse import Attachment, MailItem, parse_headers, parse_message
from core.mail.sanitize import sanitize_html
from core.mail.threads import (
    ThreadCandidate,
    ThreadDecision,
    ThreadInput,
    ThreadPolicy,
    ThreadReason,
    assign_thread,
    lookup_ids,
    normalise_subject,
    strip_subject_prefixes,
    subject_key,
)

__all__ = [
    "Address",
    "Attachment",
    "MailHeaders",
    "MailItem",
    "ThreadCandidate",
    "ThreadDecision",
    "ThreadInput",
    "ThreadPolicy",
    "ThreadReason",
    "assign_thread",
    "lookup_ids",
    "normalise_subject",
    "parse_headers",
    "parse_message",
    "sanitize_html",
    "strip_subject_prefixes",
    "subject_key",
]
