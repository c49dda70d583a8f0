"""ORM models of the CRM core: contacts, agents, calls and their history.

Times are stored as timezone-aware UTC. Phone numbers keep what was entered
(``raw``), the E.164 form when it can be parsed, and the digits reversed
(``rev_digits``) so that "ends with the last N digits" is an indexed range scan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Byte-wise ordering for the reversed-digit range scans, whatever the database locale.
DigitString = String(32).with_variant(postgresql.VARCHAR(32, collation="C"), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A DateTime that always comes back timezone-aware UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of all core tables."""


class Organization(Base):
    """A company that contacts belong to."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="organization")


class Contact(Base):
    """A person the company talks to."""

    __tablename__ = "contacts"
    # PostgreSQL: serves the search's LIKE '%…%' (core.search; migration 0008)
    __table_args__ = (
        Index(
            "ix_contacts_search_key_trgm",
            "search_key",
            postgresql_using="gin",
            postgresql_ops={"search_key": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    display_name: Mapped[str] = mapped_column(String(200), index=True)
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    # names, organization and tags folded for search (core.search.search_key)
    search_key: Mapped[str] = mapped_column(Text, default="", server_default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")

    organization: Mapped[Organization | None] = relationship(back_populates="contacts")
    phones: Mapped[list[PhoneNumber]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="PhoneNumber.id"
    )
    emails: Mapped[list[EmailAddress]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="EmailAddress.id"
    )


class PhoneNumber(Base):
    """A contact's phone number: as entered, normalised, and reversed digits for suffix match."""

    __tablename__ = "phone_numbers"
    __table_args__ = (
        Index("ix_phone_numbers_e164", "e164"),
        Index("ix_phone_numbers_rev_digits", "rev_digits"),
        Index(
            "ix_phone_numbers_rev_digits_trgm",
            "rev_digits",
            postgresql_using="gin",
            postgresql_ops={"rev_digits": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(40), default="")
    raw: Mapped[str] = mapped_column(String(64))
    e164: Mapped[str | None] = mapped_column(DigitString)
    rev_digits: Mapped[str] = mapped_column(DigitString)

    contact: Mapped[Contact] = relationship(back_populates="phones")


class EmailAddress(Base):
    """A contact's e-mail address, stored lower-cased for matching."""

    __tablename__ = "email_addresses"
    __table_args__ = (
        Index(
            "ix_email_addresses_address_trgm",
            "address",
            postgresql_using="gin",
            postgresql_ops={"address": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(320), index=True)
    label: Mapped[str] = mapped_column(String(40), default="")

    contact: Mapped[Contact] = relationship(back_populates="emails")


class Agent(Base):
    """A user of the agent page: an agent, a supervisor or an admin."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str] = mapped_column(String(320), default="")
    role: Mapped[str] = mapped_column(String(20), default="agent")
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    extensions: Mapped[list[AgentExtension]] = relationship(
        back_populates="agent", cascade="all, delete-orphan", lazy="selectin"
    )


class AgentExtension(Base):
    """A phone extension that belongs to an agent (one agent may have several)."""

    __tablename__ = "agent_extensions"

    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)

    agent: Mapped[Agent] = relationship(back_populates="extensions")


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Note(Base):
    """A free-text note on a contact, optionally about a call."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class Task(Base):
    """Something to do, e.g. "call back" after a missed call."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="todo")
    title: Mapped[str] = mapped_column(String(200))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    number: Mapped[str] = mapped_column(String(64), default="")
    assignees: Mapped[list[str]] = mapped_column(JSON, default=list)
    queue: Mapped[str] = mapped_column(String(80), default="")
    done: Mapped[bool] = mapped_column(default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("call_id", "kind", name="uq_tasks_call_kind"),)


class Call(Base):
    """One customer call, keyed by Asterisk's Linkedid (transfers and queue legs included).

    ``ring_seconds``/``talk_seconds`` and the times are None when the PBX did not
    report them; ``times_uncertain`` says some time is not known, ``backfilled``
    that facts came from Asterisk's CDR.
    """

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12), index=True)
    caller: Mapped[str] = mapped_column(String(64), default="")
    caller_e164: Mapped[str | None] = mapped_column(String(32))
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    callee: Mapped[str] = mapped_column(String(64), default="")
    callee_e164: Mapped[str | None] = mapped_column(String(32))
    did: Mapped[str] = mapped_column(String(64), default="")
    queue: Mapped[str] = mapped_column(String(80), default="")
    agents_rung: Mapped[list[str]] = mapped_column(JSON, default=list)
    answered_by: Mapped[str | None] = mapped_column(String(32), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ring_seconds: Mapped[int | None] = mapped_column(Integer)
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    hangup_cause: Mapped[str] = mapped_column(String(80), default="")
    recording_path: Mapped[str | None] = mapped_column(String(500))
    transfers: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    times_uncertain: Mapped[bool] = mapped_column(default=False, server_default=false())
    backfilled: Mapped[bool] = mapped_column(default=False, server_default=false())
    # the wrap-up, set by an agent (core.wrapup), never by the call tracker's upserts
    disposition: Mapped[str | None] = mapped_column(String(40))
    disposition_by: Mapped[int | None] = mapped_column(Integer)
    disposition_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    contacts: Mapped[list[CallContact]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class CallContact(Base):
    """A contact matched to a call (an ambiguous number matches several)."""

    __tablename__ = "call_contacts"

    call_id: Mapped[int] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # how: "exact" (linked by the lookup), or confirmed by an agent after a match
    # "suffix" (last digits), "several" (one of several), or "manual" (no match)
    match: Mapped[str] = mapped_column(String(10), default="exact", server_default="exact")


class CallAgent(Base):
    """An agent extension that was part of a call, with how (``core.calls.AgentRole`` bits).

    Filled by the writer from ``core.calls.roles_of``; ``started_at`` repeats the
    call's so that one agent's calls, newest first, are a range of one index.
    """

    __tablename__ = "call_agents"
    __table_args__ = (
        Index("ix_call_agents_extension_started", "extension", "started_at", "call_id"),
    )

    call_id: Mapped[int] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    roles: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Event(Base):
    """One event pushed to the browsers through the PostgreSQL bus (``crmcomms.pgbus``).

    ``seq`` is the global number every process sends; ``body`` the payload as JSON
    text, spliced into the websocket frame as is. Unused on SQLite; pruned by age.
    """

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now(), index=True)
    type: Mapped[str] = mapped_column(String(40))
    everyone: Mapped[bool] = mapped_column(default=False, server_default=false())
    extensions: Mapped[list[str]] = mapped_column(JSON, default=list)
    body: Mapped[str] = mapped_column(Text)
    # who published it: "<process id>:<n>", so that a repeated write adds nothing
    origin: Mapped[str | None] = mapped_column(String(40), unique=True, index=True)


class AmiRequest(Base):
    """A request a standby process forwards to the AMI link's owner (``crmcomms.forwarding``):
    claimed once (``taken_by``), answered in ``answer`` (JSON). Unused on SQLite; pruned."""

    __tablename__ = "ami_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now(), index=True)
    op: Mapped[str] = mapped_column(String(40))
    args: Mapped[str] = mapped_column(Text)
    taken_by: Mapped[str | None] = mapped_column(String(120))
    answer: Mapped[str | None] = mapped_column(Text)


class WallDayVersion(Base):
    """How often the calls of a closed UTC day changed: bumped by database triggers on
    ``calls`` and ``call_agents`` (migration 0008), read by :mod:`core.rollups`."""

    __tablename__ = "wall_day_versions"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class WallDay(Base):
    """A closed day whose wall figures are kept (for a service level ``threshold``), as of
    ``version`` of its calls (:class:`WallDayVersion`); stale when that has moved on."""

    __tablename__ = "wall_days"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    threshold: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class WallQueueDay(Base):
    """One queue's (or DID's) additive figures of a closed day (``core.stats.queue_parts``)."""

    __tablename__ = "wall_queue_days"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    threshold: Mapped[int] = mapped_column(Integer, primary_key=True)
    line: Mapped[str] = mapped_column(String(80), primary_key=True)
    queue: Mapped[str] = mapped_column(String(80))
    offered: Mapped[int] = mapped_column(Integer)
    answered: Mapped[int] = mapped_column(Integer)
    abandoned: Mapped[int] = mapped_column(Integer)
    missed: Mapped[int] = mapped_column(Integer)
    answered_within: Mapped[int] = mapped_column(Integer)
    wait_unknown: Mapped[int] = mapped_column(Integer)
    talk_count: Mapped[int] = mapped_column(Integer)
    talk_seconds: Mapped[int] = mapped_column(BigInteger)
    wait_count: Mapped[int] = mapped_column(Integer)
    wait_sum: Mapped[float | None] = mapped_column(Float)
    longest_wait: Mapped[float | None] = mapped_column(Float)


class WallAgentDay(Base):
    """One agent extension's additive figures of a closed day (``core.stats.agent_parts``)."""

    __tablename__ = "wall_agent_days"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    threshold: Mapped[int] = mapped_column(Integer, primary_key=True)
    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    answered: Mapped[int] = mapped_column(Integer)
    missed: Mapped[int] = mapped_column(Integer)
    placed: Mapped[int] = mapped_column(Integer)
    talk_count: Mapped[int] = mapped_column(Integer)
    talk_seconds: Mapped[int] = mapped_column(BigInteger)
