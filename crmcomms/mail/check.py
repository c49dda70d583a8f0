"""``check-config`` for mailboxes: log in to IMAP and SMTP once, report problems in words."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import aiosmtplib

from crmcomms.config import MailboxSettings
from crmcomms.mail import imap_endpoint
from crmcomms.mail.folders import mirrored_folders
from crmcomms.mail.imap import ImapAuthError, ImapError, connect


@dataclass(frozen=True, slots=True)
class MailboxCheck:
    """What checking a mailbox found: its problems, and the folders the sync would mirror."""

    problems: list[str]
    folders: list[str]


async def check_mailbox(settings: MailboxSettings, timeout: float = 15.0) -> MailboxCheck:
    """Log in to IMAP and SMTP; no problems when both accept the login and the folders exist."""
    problems, folders = await _check_imap(settings, timeout)
    return MailboxCheck([*problems, *await _check_smtp(settings, timeout)], folders)


async def _check_imap(box: MailboxSettings, timeout: float) -> tuple[list[str], list[str]]:
    where = f"mailbox {box.name}: IMAP {box.imap_host}:{box.imap_port}"
    try:
        async with connect(imap_endpoint(box, timeout)) as client:
            listed, namespace = await client.list_folders(), await client.namespace()
    except ImapAuthError as exc:
        return [f"{where}: login refused, check username/password ({exc})"], []
    except ImapError as exc:
        return [f"{where}: {exc}"], []
    folders = mirrored_folders(box.folders, listed, namespace)
    exist = {folder.name for folder in listed} | {"INBOX"}
    missing = [name for name in folders if name not in exist]
    return [f"{where}: folder {name!r} does not exist" for name in missing], folders


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
            await client.login(box.smtp_username, box.smtp_password.get_secret_value())
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
