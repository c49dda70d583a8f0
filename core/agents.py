"""Agents, passwords and bearer tokens.

Passwords are hashed with Argon2id (argon2-cffi). Tokens are 32 random bytes
shown once to the client; only their SHA-256 is stored, with an expiry.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AuthError, Conflict, InvalidInput
from core.models import Agent, AgentExtension, ApiToken, utcnow

ROLES = ("agent", "supervisor", "admin")


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


def _identity(agent: Agent) -> AgentIdentity:
    extensions = frozenset(ext.extension for ext in agent.extensions)
    return AgentIdentity(agent.id, agent.name, agent.role, extensions)


def _hasher() -> PasswordHasher:
    return PasswordHasher()


async def add_agent(
    session: AsyncSession,
    name: str,
    password: str,
    extensions: Sequence[str] = (),
    email: str = "",
    role: str = "agent",
) -> AgentIdentity:
    """Create an agent; the name and every extension must be unused."""
    if role not in ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(ROLES)}")
    if not name.strip():
        raise InvalidInput("name", "must not be empty")
    if len(password) < 8:
        raise InvalidInput("password", "must be at least 8 characters")
    for ext in extensions:
        if not ext.isalnum():
            raise InvalidInput("extension", f"{ext!r} is not a phone extension")
    agent = Agent(name=name.strip(), email=email, role=role, password_hash=_hasher().hash(password))
    agent.extensions = [AgentExtension(extension=ext) for ext in extensions]
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("agent name or extension already in use") from exc
    return _identity(agent)


async def _agent_by_name(session: AsyncSession, name: str) -> Agent | None:
    return await session.scalar(select(Agent).where(Agent.name == name))


async def login(
    session: AsyncSession, name: str, password: str, ttl: timedelta
) -> tuple[str, AgentIdentity]:
    """Check the password and issue a new token; AuthError with one message for any failure."""
    agent = await _agent_by_name(session, name)
    if agent is None or not _password_matches(agent.password_hash, password):
        raise AuthError("wrong user name or password")
    token = secrets.token_urlsafe(32)
    session.add(
        ApiToken(token_hash=hash_token(token), agent_id=agent.id, expires_at=utcnow() + ttl)
    )
    await session.flush()
    return token, _identity(agent)


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def identify(session: AsyncSession, token: str, now: datetime | None = None) -> AgentIdentity:
    """The agent a token belongs to; AuthError if unknown or expired."""
    row = await session.get(ApiToken, hash_token(token))
    if row is None or row.expires_at <= (now or utcnow()):
        raise AuthError("invalid or expired token")
    agent = await session.get(Agent, row.agent_id)
    if agent is None:
        raise AuthError("invalid or expired token")
    return _identity(agent)


async def logout(session: AsyncSession, token: str) -> None:
    """Revoke a token."""
    await session.execute(delete(ApiToken).where(ApiToken.token_hash == hash_token(token)))
