"""``check-config`` for mailboxes: log in to IMAP and SMTP once, report problems in words."""

from __future__ import annotations

import contextlib

import aiosmtplib

from crmcomms.config import MailboxSettings
from crmcomms.mail import imap_endpoint
from crmcomms.mail.imap import ImapAuthError, ImapError, connect


async def check_mailbox(settings: MailboxSettings, timeout: float = 15.0) -> list[str]:
    """Problems found with this mailbox (empty when IMAP and SMTP both accept the login)."""
    return [*await _check_imap(settings, timeout), *await _check_smtp(settings, timeout)]


async def _check_imap(box: MailboxSettings, timeout: float) -> list[str]:
    where = f"mailbox {box.name}: IMAP {box.imap_host}:{box.imap_port}"
    try:
        async with connect(imap_endpoint(box, timeout)) as client:
            folders = {name for name, _ in await client.list_folders()}
    except ImapAuthError as exc:
        return [f"{where}: login refused, check username/password ({exc})"]
    except ImapError as exc:
        return [f"{where}: {exc}"]
    missing = [f for f in box.folders if f not in folders]
    return [f"{where}: folder {name!r} does not exist" for name in missing]


async def _check_smtp(box: MailboxSettings, timeout: float) -> list[str]:
    where = f"mailbox {box.name}: SMTP {box.smtp_host}:{box.smtp_port}"
    client = aiosmtplib.SMTP(
        hostname=box.smtp_host,
        port=box.smtp_port,
        use_tls=box.smtp_tls == "implicit",
        start_tls=box.smtp_tls == "starttls",
        timeout=timeout,
    )
    try:
        await client.connect()
        if box.smtp_username:
            await client.login(box.smtp_username, box.smtp_password)
        else:
            await client.ehlo()
    except aiosmtplib.SMTPAuthenticationError as exc:
        return [f"{where}: login refused, check smtp_username/smtp_password ({exc.message})"]
    except (aiosmtplib.SMTPException, OSError) as exc:
        return [f"{where}: {exc}"]
    finally:
        if client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
    return []
