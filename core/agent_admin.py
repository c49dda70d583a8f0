"""Agent administration: list, show, change, reset the password, disable, enable, remove.

Used by ``crmcomms agent ...`` and the admin page alike. An agent is named by
its id or its login name. Clashes raise :class:`~core.errors.Conflict` naming
the field (``name: ...``, ``extension: ...``); the last enabled admin can be
neither demoted, disabled nor removed (nobody could administer agents on the
web any more). Changes that end a login (password, disable) revoke the agent's
tokens, so open pages are signed out at their next request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import (
    DEFAULT_EXTENSION_PATTERN,
    DISABLED,
    check_free,
    flush_agent,
    hash_password,
    is_disabled,
    revoke_tokens,
    valid_agent_email,
    valid_extensions,
    valid_name,
    valid_role,
)
from core.errors import Conflict, NotFound
from core.models import Agent, AgentExtension


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent as an administrator sees it (never the password hash)."""

    id: int
    name: str
    email: str
    role: str
    extensions: tuple[str, ...]
    disabled: bool
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "role": self.role,
            "extensions": list(self.extensions),
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class AgentChanges:
    """What to change on an agent; None leaves a field as it is."""

    name: str | None = None
    email: str | None = None
    role: str | None = None
    extensions: Sequence[str] | None = None


def record_of(agent: Agent) -> AgentRecord:
    """The admin view of an agent row."""
    return AgentRecord(
        agent.id,
        agent.name,
        agent.email,
        agent.role,
        tuple(sorted(ext.extension for ext in agent.extensions)),
        is_disabled(agent),
        agent.created_at,
    )


async def list_agents(session: AsyncSession) -> list[AgentRecord]:
    """Every agent, by name."""
    agents = await session.scalars(select(Agent).order_by(Agent.name))
    return [record_of(agent) for agent in agents]


async def find_agent(session: AsyncSession, ref: str | int) -> Agent:
    """The agent with this id (an int), or this login name or else id (a str); NotFound."""
    agent = None
    if isinstance(ref, str):
        agent = await session.scalar(select(Agent).where(Agent.name == ref))
    if agent is None and str(ref).isascii() and str(ref).isdigit() and len(str(ref)) < 19:
        agent = await session.get(Agent, int(ref))
    if agent is None:
        raise NotFound(f"agent {ref!r} not found")
    return agent


async def show_agent(session: AsyncSession, ref: str | int) -> AgentRecord:
    """One agent."""
    return record_of(await find_agent(session, ref))


async def change_agent(
    session: AsyncSession,
    ref: str | int,
    changes: AgentChanges,
    extension_pattern: str = DEFAULT_EXTENSION_PATTERN,
) -> AgentRecord:
    """Apply ``changes``; Conflict names the field that clashes with another agent."""
    agent = await find_agent(session, ref)
    name = valid_name(changes.name) if changes.name is not None else agent.name
    exts = (
        valid_extensions(changes.extensions, extension_pattern)
        if changes.extensions is not None
        else tuple(ext.extension for ext in agent.extensions)
    )
    await check_free(session, name, exts, agent.id)
    if changes.role is not None and valid_role(changes.role) != "admin":
        await _keep_an_admin(session, agent, "demote")
        agent.role = changes.role
    elif changes.role is not None:
        agent.role = changes.role
    agent.name = name
    if changes.email is not None:
        agent.email = valid_agent_email(changes.email)
    if changes.extensions is not None:
        await _replace_extensions(session, agent, exts)
    await flush_agent(session)
    return record_of(agent)


async def _replace_extensions(session: AsyncSession, agent: Agent, exts: Sequence[str]) -> None:
    # Delete first so that an extension moved between rows never clashes with itself.
    agent.extensions.clear()
    await session.flush()
    agent.extensions.extend(AgentExtension(extension=ext) for ext in exts)


async def set_password(session: AsyncSession, ref: str | int, password: str) -> AgentRecord:
    """A new password (a disabled agent stays disabled); signs the agent out everywhere."""
    agent = await find_agent(session, ref)
    new_hash = hash_password(password)
    agent.password_hash = DISABLED + new_hash if is_disabled(agent) else new_hash
    await revoke_tokens(session, agent.id)
    await session.flush()
    return record_of(agent)


async def set_disabled(session: AsyncSession, ref: str | int, disabled: bool) -> AgentRecord:
    """Disable (no login, tokens revoked) or enable an agent again with its old password."""
    agent = await find_agent(session, ref)
    if disabled and not is_disabled(agent):
        await _keep_an_admin(session, agent, "disable")
        agent.password_hash = DISABLED + agent.password_hash
        await revoke_tokens(session, agent.id)
    elif not disabled and is_disabled(agent):
        agent.password_hash = agent.password_hash.removeprefix(DISABLED)
    await session.flush()
    return record_of(agent)


async def remove_agent(session: AsyncSession, ref: str | int) -> AgentRecord:
    """Delete an agent with its extensions and tokens; its notes stay, without author."""
    agent = await find_agent(session, ref)
    await _keep_an_admin(session, agent, "remove")
    record = record_of(agent)
    await session.delete(agent)
    await session.flush()
    return record


async def _keep_an_admin(session: AsyncSession, agent: Agent, action: str) -> None:
    if agent.role != "admin" or is_disabled(agent):
        return
    others = await session.scalar(
        select(func.count())
        .select_from(Agent)
        .where(
            Agent.role == "admin", Agent.id != agent.id, ~Agent.password_hash.startswith(DISABLED)
        )
    )
    if not others:
        raise Conflict(f"role: cannot {action} {agent.name}, the last enabled admin")
