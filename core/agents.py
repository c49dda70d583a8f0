"""Agents, passwords and bearer tokens.

Passwords are hashed with Argon2id (argon2-cffi). Tokens are 32 random bytes
shown once to the client; only their SHA-256 is stored, with an expiry.
A disabled agent keeps its row (and extensions, so the call log stays
readable) but its password hash is prefixed with ``!`` (as in /etc/shadow):
it matches no password, and its tokens are revoked. Administration
(list, change, disable, remove) is in :mod:`core.agent_admin`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.contacts import valid_email
from core.db import SessionFactory
from core.errors import AuthError, Conflict, InvalidInput
from core.models import Agent, AgentExtension, ApiToken, utcnow
from core.priority import run_behind

ROLES = ("agent", "supervisor", "admin")
DEFAULT_EXTENSION_PATTERN = "[0-9]{1,15}"
DISABLED = "!"
"""Prefix of the password hash of a disabled agent."""


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who is calling the API or listening on the websocket."""

    id: int
    name: str
    role: str
    extensions: frozenset[str]

    @property
    def sees_everything(self) -> bool:
        """Supervisors and admins see every call and e-mail."""
        return self.role in ("supervisor", "admin")

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "extensions": sorted(self.extensions),
        }


def identity_of(agent: Agent) -> AgentIdentity:
    """The identity of an agent row (extensions loaded)."""
    extensions = frozenset(ext.extension for ext in agent.extensions)
    return AgentIdentity(agent.id, agent.name, agent.role, extensions)


def is_disabled(agent: Agent) -> bool:
    """The agent may not log in."""
    return agent.password_hash.startswith(DISABLED)


def hash_password(password: str) -> str:
    """The stored form of a valid password; InvalidInput('password') if too short."""
    if len(password) < 8:
        raise InvalidInput("password", "must be at least 8 characters")
    return _hasher().hash(password)


def _hasher() -> PasswordHasher:
    return PasswordHasher()


# --- validation shared with core.agent_admin ---------------------------------


def valid_name(name: str) -> str:
    """A login name, stripped; InvalidInput('name') when empty or too long."""
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput("name", "must not be empty")
    if len(cleaned) > 100 or any(not c.isprintable() for c in cleaned):
        raise InvalidInput("name", "must be at most 100 printable characters")
    return cleaned


def valid_role(role: str) -> str:
    """One of :data:`ROLES`."""
    if role not in ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(ROLES)}")
    return role


def valid_agent_email(email: str) -> str:
    """An empty or valid address, lower-cased."""
    return valid_email(email, "email") if email.strip() else ""


def valid_extensions(extensions: Sequence[str], pattern: str) -> tuple[str, ...]:
    """Stripped extensions, each matching ``pattern`` (whole match), none twice."""
    cleaned = tuple(ext.strip() for ext in extensions)
    for ext in cleaned:
        if not re.fullmatch(pattern, ext):
            raise InvalidInput("extension", f"{ext!r} is not an extension (expected {pattern})")
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("extension", "an extension is given twice")
    return cleaned


async def check_free(
    session: AsyncSession, name: str, extensions: Sequence[str], agent_id: int | None = None
) -> None:
    """Conflict naming the field when ``name`` or an extension belongs to another agent."""
    other = await session.scalar(select(Agent).where(Agent.name == name, Agent.id != agent_id))
    if other is not None:
        raise Conflict(f"name: {name!r} is already the name of agent {other.id}")
    rows = await session.execute(
        select(AgentExtension.extension, Agent.name)
        .join(Agent, Agent.id == AgentExtension.agent_id)
        .where(AgentExtension.extension.in_(extensions), Agent.id != agent_id)
        .order_by(AgentExtension.extension)
    )
    for ext, owner in rows:
        raise Conflict(f"extension: {ext} already belongs to agent {owner}")


async def flush_agent(session: AsyncSession) -> None:
    """Flush; a clash that slipped past :func:`check_free` (a concurrent change) is a Conflict."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("name or extension: already in use by another agent") from exc


async def add_agent(
    session: AsyncSession,
    name: str,
    password: str,
    extensions: Sequence[str] = (),
    email: str = "",
    role: str = "agent",
    *,
    extension_pattern: str = DEFAULT_EXTENSION_PATTERN,
) -> AgentIdentity:
    """Create an agent; the name and every extension must be unused (Conflict names which)."""
    name = valid_name(name)
    exts = valid_extensions(extensions, extension_pattern)
    agent = Agent(
        name=name,
        email=valid_agent_email(email),
        role=valid_role(role),
        password_hash=hash_password(password),
    )
    await check_free(session, name, exts)
    agent.extensions = [AgentExtension(extension=ext) for ext in exts]
    session.add(agent)
    await flush_agent(session)
    return identity_of(agent)


async def _agent_by_name(session: AsyncSession, name: str) -> Agent | None:
    return await session.scalar(select(Agent).where(Agent.name == name))


async def login(
    session: AsyncSession, name: str, password: str, ttl: timedelta
) -> tuple[str, AgentIdentity]:
    """Check the password and issue a new token; AuthError with one message for any failure.

    An unknown name costs the same Argon2 check as a known one (against a dummy hash),
    so the answer time does not tell which names exist; the check runs in a thread,
    off the event loop.
    """
    agent = await _agent_by_name(session, name)
    await _check_password(agent, password)
    assert agent is not None  # _check_password refuses an unknown name
    return await _issue_token(session, agent, ttl)


async def login_pooled(
    sessions: SessionFactory, name: str, password: str, ttl: timedelta
) -> tuple[str, AgentIdentity]:
    """:func:`login` holding no database connection while Argon2 runs (the API's: parallel
    logins must not take the pool from everything else)."""
    async with sessions() as session:
        agent = await _agent_by_name(session, name)
    await _check_password(agent, password)
    assert agent is not None
    async with sessions.begin() as session:
        current = await session.get(Agent, agent.id)
        if current is None or current.password_hash != agent.password_hash:
            raise AuthError("wrong user name or password")  # changed meanwhile
        return await _issue_token(session, current, ttl)


async def _check_password(agent: Agent | None, password: str) -> None:
    stored = agent.password_hash if agent is not None else None
    loop = asyncio.get_running_loop()  # an unknown name is checked too (a dummy hash)
    matches = await loop.run_in_executor(_argon2_threads(), _password_matches, stored, password)
    if agent is None or not matches:
        raise AuthError("wrong user name or password")


async def _issue_token(
    session: AsyncSession, agent: Agent, ttl: timedelta
) -> tuple[str, AgentIdentity]:
    token = secrets.token_urlsafe(32)
    session.add(
        ApiToken(token_hash=hash_token(token), agent_id=agent.id, expires_at=utcnow() + ttl)
    )
    await session.flush()
    return token, identity_of(agent)


def _password_matches(password_hash: str | None, password: str) -> bool:
    """Argon2 verification (slow on purpose); ``None`` checks against a dummy hash."""
    # A disabled agent's "!..." hash is no valid hash: InvalidHashError, no match.
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _argon2_threads() -> ThreadPoolExecutor:
    """Threads of their own for Argon2 (CPU and 64 MiB each): parallel logins neither
    block the event loop nor fill the default executor that DNS and files use."""
    return ThreadPoolExecutor(
        min(2, os.cpu_count() or 1), thread_name_prefix="argon2", initializer=run_behind
    )


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password with the current parameters, made once."""
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def identify(session: AsyncSession, token: str, now: datetime | None = None) -> AgentIdentity:
    """The agent a token belongs to; AuthError if unknown, expired or disabled."""
    return await identify_hashed(session, hash_token(token), now)


async def identify_hashed(
    session: AsyncSession, token_hash: str, now: datetime | None = None
) -> AgentIdentity:
    """:func:`identify` for a token known by its stored form (a websocket ticket)."""
    row = await session.get(ApiToken, token_hash)
    if row is None or row.expires_at <= (now or utcnow()):
        raise AuthError("invalid or expired token")
    return await identify_agent(session, row.agent_id)


async def identify_agent(session: AsyncSession, agent_id: int) -> AgentIdentity:
    """The identity of an agent who may log in (a signed media URL); AuthError otherwise."""
    agent = await session.get(Agent, agent_id)
    if agent is None or is_disabled(agent):
        raise AuthError("invalid or expired token")
    return identity_of(agent)


async def logout(session: AsyncSession, token: str) -> None:
    """Revoke a token."""
    await session.execute(delete(ApiToken).where(ApiToken.token_hash == hash_token(token)))


async def revoke_tokens(session: AsyncSession, agent_id: int) -> None:
    """Revoke every token of an agent (password changed, disabled)."""
    await session.execute(delete(ApiToken).where(ApiToken.agent_id == agent_id))
