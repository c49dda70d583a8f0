"""ORM tables of the mail mirror and the outbox.

One :class:`EmailMessage` per message and mailbox, however many folders hold
it (each copy is an :class:`EmailLocation`: folder, UIDVALIDITY, UID). Messages
are deduplicated by ``dedupe_key``: the SHA-256 of ``id:<Message-ID>``, or of
``hash:<content hash>`` when the Message-ID is missing or collides with a
different message (other sender or subject).

Raw bytes live in :class:`EmailRaw`, in the database, committed in the same
transaction as the message row and its decoded headers (bodies and
attachments may follow in a later transaction: ``body_parsed``): a crash can
never leave a row without its raw message, and a batch costs one WAL sync
instead of one fsync per file.
Attachments are content-addressed files (``core.mail.blobs``), referenced by
``sha256``.

Outgoing mail is an EmailMessage with ``direction='out'`` and an outbox
``state``: queued -> sending -> sent | failed (see ``core.mail.outbox``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, UtcDateTime, utcnow

Addresses = list[dict[str, str]]


class EmailMessage(Base):
    """One message of a mailbox (received or sent), with its decoded headers and bodies."""

    __tablename__ = "email_messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "dedupe_key", name="uq_email_messages_dedupe"),
        Index("ix_email_messages_state", "state", "next_attempt_at"),
        Index("ix_email_messages_body_parsed", "body_parsed", "mailbox"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    thread_id: Mapped[str] = mapped_column(String(998), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_key: Mapped[str] = mapped_column(String(255), index=True, default="")
    from_: Mapped[Addresses] = mapped_column("from", JSON, default=list)
    to: Mapped[Addresses] = mapped_column(JSON, default=list)
    cc: Mapped[Addresses] = mapped_column(JSON, default=list)
    reply_to: Mapped[Addresses] = mapped_column(JSON, default=list)
    date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sort_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer, default=0)
    parse_error: Mapped[str | None] = mapped_column(Text)
    # False from the moment the raw message and its headers are stored until
    # its bodies and attachments are extracted (``core.mail.bodies``).
    body_parsed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    direction: Mapped[str] = mapped_column(String(3), default="in")
    state: Mapped[str | None] = mapped_column(String(10))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_folder_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class EmailRaw(Base):
    """The raw RFC 5322 bytes of a message, exactly as fetched or sent."""

    __tablename__ = "email_raw"

    email_id: Mapped[int] = mapped_column(
        ForeignKey("email_messages.id", ondelete="CASCADE"), primary_key=True
    )
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class EmailLocation(Base):
    """Where a copy of a message sits on the IMAP server (UIDs are valid per UIDVALIDITY)."""

    __tablename__ = "email_locations"
    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_email_locations"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(
        ForeignKey("email_messages.id", ondelete="CASCADE"), index=True
    )
    mailbox: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)


class FolderState(Base):
    """Sync progress of one folder: the UIDVALIDITY seen and the last UID committed."""

    __tablename__ = "email_folder_states"

    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    folder: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    synced_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class EmailAttachment(Base):
    """Attachment ``n`` (0-based, in MIME order) of a message; content in the blob store."""

    __tablename__ = "email_attachments"

    email_id: Mapped[int] = mapped_column(
        ForeignKey("email_messages.id", ondelete="CASCADE"), primary_key=True
    )
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str | None] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    content_id: Mapped[str | None] = mapped_column(String(500))
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_json(self) -> dict[str, Any]:
        """The attachment as the API lists it."""
        return {
            "n": self.n,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "inline": self.inline,
            "content_id": self.content_id,
            "truncated": self.truncated,
        }


class EmailContact(Base):
    """A contact a message concerns, found by its From/To/Cc/Reply-To addresses."""

    __tablename__ = "email_contacts"

    email_id: Mapped[int] = mapped_column(
        ForeignKey("email_messages.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EmailRef(Base):
    """A Message-ID a message is known by or refers to, for threading lookups."""

    __tablename__ = "email_refs"

    email_id: Mapped[int] = mapped_column(
        ForeignKey("email_messages.id", ondelete="CASCADE"), primary_key=True
    )
    ref: Mapped[str] = mapped_column(String(998), primary_key=True, index=True)
