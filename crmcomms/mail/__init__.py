"""Mail workers: the IMAP mirror (``sync``), the SMTP outbox (``smtp``) and config checks."""

from __future__ import annotations

from core.mail import ThreadPolicy
from core.mail.blobs import BlobStore
from core.mail.store import StoreOptions
from crmcomms.config import MailboxSettings, Settings
from crmcomms.mail.imap import Endpoint


def blob_store(settings: Settings) -> BlobStore:
    """The attachment store in the data dir."""
    return BlobStore(settings.general.data_dir / "blobs")


def imap_endpoint(box: MailboxSettings, timeout: float = 60.0) -> Endpoint:
    """Where the mailbox's IMAP server is and how to log in."""
    username = box.username or box.address
    password = box.password.get_secret_value()
    return Endpoint(box.imap_host, box.imap_port, box.imap_tls, username, password, timeout)


def store_options(box: MailboxSettings) -> StoreOptions:
    """Linking options of a mailbox: its own addresses are never contacts, and its
    domain is internal for subject threading."""
    own = {box.address.lower()}
    if "@" in box.username:
        own.add(box.username.lower())
    domains = frozenset(address.rpartition("@")[2] for address in own)
    policy = ThreadPolicy(internal_domains=domains, internal_addresses=frozenset(own))
    return StoreOptions(
        own_addresses=frozenset(own),
        create_unknown_contacts=box.create_unknown_contacts,
        thread_policy=policy,
        visibility=box.visibility,
    )
