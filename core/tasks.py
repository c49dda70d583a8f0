"""Tasks: "call back" after a missed call and other to-dos, per agent or queue."""

from __future__ import annotations

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
