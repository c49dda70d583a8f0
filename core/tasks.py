"""Tasks: "call back" after a missed call and other to-dos, per agent or queue."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Task, utcnow


async def list_tasks(
    session: AsyncSession, extensions: frozenset[str] | None, open_only: bool, limit: int = 100
) -> list[Task]:
    """Tasks newest first; ``extensions`` limits to tasks assigned to them (None: all)."""
    query = select(Task).order_by(Task.created_at.desc(), Task.id.desc())
    if open_only:
        query = query.where(Task.done.is_(False))
    found: list[Task] = []
    for task in await session.scalars(query.limit(limit * 10)):
        if extensions is None or extensions & set(task.assignees):
            found.append(task)
        if len(found) >= limit:
            break
    return found


async def create_task(
    session: AsyncSession, title: str, contact_id: int | None, assignees: Sequence[str]
) -> Task:
    """A to-do (kind ``todo``) for these agent extensions, e.g. from the contact view."""
    task = Task(kind="todo", title=title, contact_id=contact_id, assignees=sorted(set(assignees)))
    session.add(task)
    await session.flush()
    return task


async def complete_task(session: AsyncSession, task_id: int) -> Task:
    """Tick a task off (idempotent)."""
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    if not task.done:
        task.done = True
        task.done_at = utcnow()
    await session.flush()
    return task
