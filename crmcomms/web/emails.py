"""E-mail API: list and read mirrored mail, download attachments, send (queue) mail."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput, NotFound
from core.mail.email_json import email_detail_json, emails_json
from core.mail.models import EmailMessage
from core.mail.outbox import Draft, OutgoingAttachment, enqueue
from core.mail.queries import (
    Cursor,
    EmailFilter,
    Reader,
    attachment_content,
    attachments_of,
    contacts_of,
    get_email,
    may_read,
    page_emails,
)
from core.models import Agent, utcnow
from crmcomms.config import MailboxSettings
from crmcomms.keys import MAIL_PARSERS, OUTBOX_WAKEUPS
from crmcomms.mail import blob_store, store_options
from crmcomms.services import services
from crmcomms.web.http import (
    IDENTITY,
    MAX_ID,
    int_param,
    json_response,
    optional_id,
    path_id,
    read_model,
)

MAX_ATTACHMENTS_BYTES = 25 * 2**20
#: RFC 5321 4.5.3.1.3: a path holds at most 256 octets, the address within it 254.
MAX_ADDRESS = 254
MAX_RECIPIENTS = 100
MAX_SUBJECT = 998  # RFC 5322 2.1.1: the longest line a header field may have
# dot-atom local part and host name (RFC 5322 3.4.1, RFC 1035 labels), ASCII only:
# a quoted local part or a non-ASCII one would need SMTPUTF8, which we do not send.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
# Unicode's control characters (category Cc) and line and paragraph separators (Zl, Zp):
# the email package folds at several of them, SMTP refuses others.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: An address as the JSON may carry it: the length is checked before anything parses it.
Address = Annotated[str, Field(max_length=MAX_ADDRESS)]


def _since(request: web.Request) -> datetime | None:
    raw = request.query.get("since")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput("since", "must be an ISO 8601 date-time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filter(request: web.Request, reader: Reader) -> EmailFilter:
    return EmailFilter(
        contact_id=optional_id(request, "contact"),
        thread_id=request.query.get("thread") or None,
        since=_since(request),
        limit=int_param(request, "limit", 50, maximum=500),
        reader=reader,
        before=_cursor(request),
    )


def _cursor(request: web.Request) -> Cursor | None:
    raw = request.query.get("before")
    if not raw:
        return None
    try:
        return Cursor.decode(raw)
    except ValueError as exc:
        raise InvalidInput("before", "must be the 'next' of an earlier page") from exc


async def _reader(request: web.Request, session: AsyncSession) -> Reader:
    """The caller as a reader of mail (agents read what the push sends them)."""
    identity = request[IDENTITY]
    email = await session.scalar(select(Agent.email).where(Agent.id == identity.id))
    boxes = services(request).settings.mailboxes
    visibility = {box.name: box.visibility for box in boxes}
    return Reader(identity.id, email or "", identity.sees_everything, visibility)


async def _readable_email(request: web.Request, session: AsyncSession) -> EmailMessage:
    """The e-mail of the URL if the caller may read it: 404 alike when it does not exist
    or is not theirs (an agent does not learn which ids exist)."""
    email_id = path_id(request, "email_id")
    message = await get_email(session, email_id)
    if not await may_read(session, await _reader(request, session), message):
        raise NotFound(f"e-mail {email_id} not found")
    return message


async def get_emails(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        page = await page_emails(session, _filter(request, await _reader(request, session)))
        after = page.next.encode() if page.next is not None else None
        emails = await session.run_sync(emails_json, page.emails)
    return json_response({"emails": emails, "next": after})


async def get_one_email(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        message = await _readable_email(request, session)
        email_id = message.id
        attachments = await attachments_of(session, email_id)
        contacts = await contacts_of(session, email_id)
    return json_response(email_detail_json(message, contacts, attachments))


async def get_attachment(request: web.Request) -> web.Response:
    svc = services(request)
    n = path_id(request, "n")
    async with svc.sessions() as session:
        email_id = (await _readable_email(request, session)).id
        part, content = await attachment_content(session, blob_store(svc.settings), email_id, n)
    filename = part.filename or f"attachment-{n}"
    return web.Response(
        body=content,
        content_type=part.content_type if "/" in part.content_type else "application/octet-stream",
        headers={
            # never rendered by the browser on our origin: an HTML attachment is not a page
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


class AttachmentInput(BaseModel):
    """A file to send, base64-encoded."""

    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(default="application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$")
    content_base64: str


class EmailInput(BaseModel):
    """Body of ``POST /api/emails``. Lengths are checked here, before anything reads
    the text; characters and address syntax in :func:`_draft`."""

    model_config = ConfigDict(extra="forbid")
    to: list[Address] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[Address] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[Address] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    subject: str = Field(default="", max_length=MAX_SUBJECT)
    text: str = Field(default="", max_length=2_000_000)
    html: str | None = Field(default=None, max_length=5_000_000)
    attachments: list[AttachmentInput] = Field(default_factory=list, max_length=50)
    in_reply_to: int | None = Field(default=None, ge=1, le=MAX_ID)
    mailbox: str | None = Field(default=None, max_length=64)


def _address(field: str, value: str) -> str:
    """``value`` as a sendable ASCII addr-spec (an IDN domain in its xn-- form), else 422."""
    local, at, domain = _header_text(field, value).strip().rpartition("@")
    if not at:
        raise InvalidInput(field, f"{_shown(value)} is not an e-mail address")
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as exc:
        raise InvalidInput(field, f"{_shown(value)}: the domain is not valid") from exc
    address = f"{local}@{domain}"
    if len(local) > 64 or len(address) > MAX_ADDRESS:
        raise InvalidInput(field, f"longer than {MAX_ADDRESS} characters (local part 64)")
    if not _ADDR_SPEC.fullmatch(address):
        raise InvalidInput(field, f"{_shown(value)} is not an e-mail address")
    return address


def _header_text(field: str, value: str) -> str:
    """A header field's text: no control characters nor line breaks (tabs pass)."""
    bad = _forbidden(value.replace("\t", " "))
    if bad is not None:
        raise InvalidInput(field, f"contains the control character U+{ord(bad):04X}")
    return value


def _forbidden(value: str) -> str | None:
    """The first control, line-break or separator character of ``value``, if any."""
    found = _CONTROL.search(value)
    return found[0] if found else None


def _shown(value: str) -> str:
    """``value`` for an error message: escaped and cut short."""
    return repr(value if len(value) <= 80 else value[:80] + "...")


def _decode(index: int, part: AttachmentInput) -> OutgoingAttachment:
    try:
        content = base64.b64decode(part.content_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"attachments.{index}.content_base64", "is not base64") from exc
    return OutgoingAttachment(part.filename, part.content_type, content)


def _mailbox(request: web.Request, name: str | None) -> MailboxSettings:
    boxes = services(request).settings.mailboxes
    for box in boxes:
        if name is None or box.name == name:
            return box
    raise InvalidInput("mailbox", "no such mailbox" if boxes else "no mailbox is configured")


def _draft(data: EmailInput, box: MailboxSettings) -> Draft:
    if len(data.to) + len(data.cc) + len(data.bcc) > MAX_RECIPIENTS:
        raise InvalidInput("cc", f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
    for i, part in enumerate(data.attachments):
        _header_text(f"attachments.{i}.filename", part.filename)
    attachments = tuple(_decode(i, part) for i, part in enumerate(data.attachments))
    if sum(len(a.content) for a in attachments) > MAX_ATTACHMENTS_BYTES:
        raise InvalidInput("attachments", "together larger than 25 MB")
    return Draft(
        mailbox=box.name,
        sender=box.address,
        sender_name=box.display_name,
        to=tuple(_address(f"to.{i}", a) for i, a in enumerate(data.to)),
        cc=tuple(_address(f"cc.{i}", a) for i, a in enumerate(data.cc)),
        bcc=tuple(_address(f"bcc.{i}", a) for i, a in enumerate(data.bcc)),
        subject=_header_text("subject", data.subject),
        text=data.text,
        html=data.html,
        attachments=attachments,
        in_reply_to=data.in_reply_to,
    )


async def post_email(request: web.Request) -> web.Response:
    data = await read_model(request, EmailInput)
    box = _mailbox(request, data.mailbox)
    draft = _draft(data, box)
    svc = services(request)
    async with svc.sessions.begin() as session:
        message: EmailMessage = await enqueue(
            session,
            draft,
            blob_store(svc.settings),
            utcnow(),
            agent_id=request[IDENTITY].id,
            options=store_options(box),
            executor=request.app.get(MAIL_PARSERS),
        )
        queued = await session.run_sync(emails_json, [message])
    wakeups = request.app.get(OUTBOX_WAKEUPS)
    if wakeups is not None:
        wakeups.wake(box.name)
    return json_response(queued[0], status=202)


async def get_mailboxes(request: web.Request) -> web.Response:
    """The mailboxes mail can be sent from (empty: the page offers no e-mail)."""
    boxes = services(request).settings.mailboxes
    return json_response(
        {
            "mailboxes": [
                {"name": box.name, "address": box.address, "display_name": box.display_name}
                for box in boxes
            ],
            "max_attachments_bytes": MAX_ATTACHMENTS_BYTES,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/mailboxes", get_mailboxes)
    app.router.add_get("/api/emails", get_emails)
    app.router.add_post("/api/emails", post_email)
    app.router.add_get("/api/emails/{email_id}", get_one_email)
    app.router.add_get("/api/emails/{email_id}/attachments/{n}", get_attachment)
