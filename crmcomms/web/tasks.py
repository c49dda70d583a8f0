"""Tasks API: my open call-backs, and ticking them off."""

from __future__ import annotations

from aiohttp import web

from core.errors import NotFound
from core.history import task_json
from core.models import Task
from core.tasks import complete_task, list_tasks
from crmcomms.push import Audience
from crmcomms.services import services
from crmcomms.web.http import IDENTITY, int_param, json_response, path_id


async def get_tasks(request: web.Request) -> web.Response:
    identity = request[IDENTITY]
    scope = None if identity.sees_everything else identity.extensions
    open_only = request.query.get("open", "1") not in ("0", "false")
    async with services(request).sessions() as session:
        rows = await list_tasks(
            session, scope, open_only, limit=int_param(request, "limit", 100, maximum=500)
        )
    return json_response({"tasks": [task_json(task) for task in rows]})


async def post_done(request: web.Request) -> web.Response:
    """Tick a task off: its assignees (by extension), supervisors and admins."""
    task_id, identity = path_id(request, "task_id"), request[IDENTITY]
    async with services(request).sessions.begin() as session:
        task = await session.get(Task, task_id)
        if task is None:
            raise NotFound(f"task {task_id} not found")
        if not identity.sees_everything and identity.extensions.isdisjoint(task.assignees):
            raise web.HTTPForbidden(reason="not your task")
        task = await complete_task(session, task_id)
    done = task_json(task)  # pushed, so that a call-back ticked off leaves every list
    audience = Audience(extensions=frozenset(done["assignees"]))
    services(request).publisher.publish("task.done", {"task": done}, audience)
    return json_response(done)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/tasks", get_tasks)
    app.router.add_post("/api/tasks/{task_id}/done", post_done)
