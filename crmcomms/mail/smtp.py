"""The outbox worker of one mailbox: sends queued mail over SMTP, then files it in Sent.

A round: claim the oldest due ``queued`` message (-> ``sending``, committed),
hand its stored bytes to the SMTP server (aiosmtplib), then record the
outcome: ``sent``; or, on a temporary failure (4xx, connection refused,
timeout), ``queued`` again with an exponential backoff; or, on a permanent
one (5xx), ``failed`` with the server's reply. Sent messages are then
APPENDed to the mailbox's Sent folder over IMAP (retried each round until it
works); the Sent folder's sync recognises the copy by its Message-ID.

At start-up, messages left in ``sending`` are queued again, once: see
:mod:`core.mail.outbox` for the resulting at-least-once guarantee. A message
that fails in a way no retry can heal (an exception other than an SMTP or
network error) is marked ``failed`` with the reason, announced, and the worker
goes on with the next one.
The worker wakes when the API queues a message (:class:`OutboxWakeups`),
when a retry is due, or every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import SessionFactory
from core.mail.email_json import stored_email_json
from core.mail.models import EmailMessage
from core.mail.outbox import (
    claim_next,
    mark_appended,
    mark_failed,
    mark_sent,
    next_due,
    outbox_counts,
    pending_appends,
    raw_of,
    raw_or_none,
    recover_interrupted,
    retry_later,
    split_bcc,
)
from core.mail.queries import MailReaders, readers_extensions
from core.models import utcnow
from crmcomms.config import MailboxSettings
from crmcomms.health import Health
from crmcomms.logs import log_fields
from crmcomms.mail import imap_endpoint
from crmcomms.mail.folders import sent_folder_of
from crmcomms.mail.imap import ImapClient, ImapError, connect
from crmcomms.push import Audience, Publisher

log = logging.getLogger(__name__)


class OutboxWakeups:
    """One event per mailbox, set by the API when it queues a message."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, mailbox: str) -> asyncio.Event:
        """The event the worker of ``mailbox`` waits on."""
        return self._events.setdefault(mailbox, asyncio.Event())

    def wake(self, mailbox: str) -> None:
        """Tell the worker of ``mailbox`` that something is queued."""
        self.event(mailbox).set()


@dataclass(frozen=True, slots=True)
class SendTuning:
    """Retry timing and timeouts (tests shorten them)."""

    retry_initial: float = 30.0
    retry_max: float = 3600.0
    max_attempts: int = 50
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one attempt ended: ``sent``, ``retry`` or ``failed``, with the server's words."""

    outcome: str
    reason: str = ""


def classify(exc: Exception) -> SendResult:
    """Temporary or permanent, from an aiosmtplib or socket error."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [error.code for error in exc.recipients]
        reason = "; ".join(f"{e.recipient}: {e.code} {e.message}" for e in exc.recipients)
        return SendResult("failed" if all(c >= 500 for c in codes) else "retry", reason)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500:
        return SendResult("failed", f"{exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendResult("retry", f"{exc.code} {exc.message}")
    return SendResult("retry", f"{type(exc).__name__}: {exc}")


class OutboxWorker:
    """Sends the outbox of one mailbox; ``run()`` never returns (cancel it to stop)."""

    def __init__(
        self,
        settings: MailboxSettings,
        sessions: SessionFactory,
        publisher: Publisher,
        gauge: Gauge,
        health: Health,
        wakeups: OutboxWakeups | None = None,
        tuning: SendTuning | None = None,
    ) -> None:
        """``gauge``: the outbox's messages by state (label ``state``)."""
        self.settings = settings
        self.sessions = sessions
        self.publisher = publisher
        self.gauge = gauge
        self.health = health
        self.tuning = tuning or SendTuning()
        self.wake = (wakeups or OutboxWakeups()).event(settings.name)

    async def run(self) -> None:
        """Requeue interrupted sends, then send and file mail as it comes."""
        with log_fields(mailbox=self.name):  # every line of this task names the mailbox
            self._health("ok")
            await self.recover()
            while True:
                self.wake.clear()
                while await self.send_next():
                    pass
                await self.file_sent_copies()
                await self._update_gauge()
                await self._sleep_until_due()

    @property
    def name(self) -> str:
        return self.settings.name

    def _health(self, state: str, error: str | None = None) -> None:
        """Report to /healthz and /readyz (``outbox:<name>``); a deferring SMTP server
        shows as degraded but does not make the daemon unready."""
        name = f"outbox:{self.name}"
        self.health.set(name, state, ok=state == "ok", error=error, required=False)

    async def recover(self) -> None:
        """Deal with the messages a stop left in ``sending``: queued again, or failed when
        it happened to them twice in a row (:func:`core.mail.outbox.recover_interrupted`)."""
        async with self.sessions.begin() as session:
            recovery = await recover_interrupted(session, self.name)
            await session.flush()
            failed = [
                (await self._audience(session, m.agent_id), await _email(session, m.id))
                for m in recovery.failed
            ]
        if recovery.requeued:
            log.warning(
                "outbox %s: %d interrupted sends queued again", self.name, len(recovery.requeued)
            )
        for audience, email in failed:
            self._announce(email, SendResult("failed", email["error"] or ""), audience)

    async def send_next(self) -> bool:
        """Send the next due message, if any; False when none is due."""
        async with self.sessions.begin() as session:
            message = await claim_next(session, self.name, utcnow())
            if message is None:
                return False
            raw = await raw_or_none(session, message.id)
        if raw is None:
            result = SendResult("failed", "the stored message is missing")
        else:
            result = await self._deliver(message, raw)
        await self._record(message, result)
        return True

    async def _deliver(self, message: EmailMessage, raw: bytes) -> SendResult:
        """One attempt. Whatever goes wrong ends as a result: a message that can never be
        sent is ``failed`` and the worker goes on with the next one."""
        raw, bcc = split_bcc(raw)  # Bcc: envelope recipients only, not a header on the wire
        recipients = [a["address"] for a in (*message.to, *message.cc) if a["address"]]
        recipients += bcc
        box = self.settings
        try:
            errors, _reply = await aiosmtplib.send(
                raw,
                sender=box.address,
                recipients=recipients,
                hostname=box.smtp_host,
                port=box.smtp_port,
                use_tls=box.smtp_tls == "implicit",
                start_tls=box.smtp_tls == "starttls",
                username=box.smtp_username or None,
                password=(box.smtp_password.get_secret_value() or None)
                if box.smtp_username
                else None,
                timeout=self.tuning.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return classify(exc)
        except Exception as exc:  # e.g. a control character in an address: never heals
            log.exception("outbox %s: e-mail %d cannot be sent", self.name, message.id)
            return SendResult("failed", f"cannot be sent: {type(exc).__name__}: {exc}")
        refused = "; ".join(f"{rcpt}: {err.code} {err.message}" for rcpt, err in errors.items())
        return SendResult("sent", f"refused by the server: {refused}" if refused else "")

    async def _record(self, message: EmailMessage, result: SendResult) -> None:
        now = utcnow()
        async with self.sessions.begin() as session:
            if result.outcome == "sent":
                await mark_sent(session, message.id, now, result.reason or None)
            elif result.outcome == "retry" and message.attempts < self.tuning.max_attempts:
                await retry_later(session, message.id, result.reason, now + self._backoff(message))
            else:
                await mark_failed(session, message.id, result.reason)
            audience = await self._audience(session, message.agent_id)
            email = await _email(session, message.id)
        self._announce(email, result, audience)

    def _backoff(self, message: EmailMessage) -> timedelta:
        delay = self.tuning.retry_initial * 2 ** max(message.attempts - 1, 0)
        return timedelta(seconds=min(delay, self.tuning.retry_max))

    async def _audience(self, session: AsyncSession, agent_id: int | None) -> Audience:
        if agent_id is None:
            return Audience()
        readers = MailReaders(agent_ids=frozenset({agent_id}))
        return Audience(extensions=await session.run_sync(readers_extensions, readers))

    def _announce(self, email: dict[str, Any], result: SendResult, audience: Audience) -> None:
        """Publish ``email.sent`` or ``email.failed`` (a deferred message: the health only)."""
        if result.outcome == "retry":
            log.info("outbox %s: e-mail %d deferred: %s", self.name, email["id"], result.reason)
            self._health("deferring", result.reason)
            return
        self._health("ok")
        kind = "email.sent" if result.outcome == "sent" else "email.failed"
        if kind == "email.failed":
            log.warning("outbox %s: e-mail %d failed: %s", self.name, email["id"], result.reason)
        self.publisher.publish(kind, {"email": email}, audience)

    async def file_sent_copies(self) -> None:
        """APPEND sent messages to the Sent folder; failures are retried next round."""
        async with self.sessions() as session:
            pending = list(await pending_appends(session, self.name))
        if not pending:
            return
        try:
            async with connect(imap_endpoint(self.settings, self.tuning.timeout)) as client:
                folder = await sent_folder(client)
                for message in pending:
                    await self._append(client, folder, message.id)
        except ImapError as exc:
            log.warning("outbox %s: cannot file copies in Sent yet: %s", self.name, exc)

    async def _append(self, client: ImapClient, folder: str, email_id: int) -> None:
        async with self.sessions() as session:
            raw = await raw_of(session, email_id)
        await client.append(folder, raw)
        async with self.sessions.begin() as session:
            await mark_appended(session, email_id)

    async def _update_gauge(self) -> None:
        async with self.sessions() as session:
            counts = await outbox_counts(session)
        for state, number in counts.items():
            self.gauge.labels(state).set(number)

    async def _sleep_until_due(self) -> None:
        async with self.sessions() as session:
            due = await next_due(session, self.name)
        timeout = self.settings.poll_interval
        if due is not None:
            timeout = max(0.0, min(timeout, _seconds_until(due)))
        try:
            async with asyncio.timeout(timeout):
                await self.wake.wait()
        except TimeoutError:
            pass  # a retry is due or the poll interval passed


async def _email(session: AsyncSession, email_id: int) -> dict[str, Any]:
    return await session.run_sync(stored_email_json, email_id)


def _seconds_until(when: datetime) -> float:
    return (when - utcnow()).total_seconds()


async def sent_folder(client: ImapClient) -> str:
    """The folder marked ``\\Sent`` (SPECIAL-USE), else a well-known name in the personal
    namespace, else ``Sent`` there (``INBOX.Sent`` on Cyrus): see :mod:`crmcomms.mail.folders`."""
    return sent_folder_of(await client.list_folders(), await client.namespace())
