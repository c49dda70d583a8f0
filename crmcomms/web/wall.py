"""The supervisor wall's summary: ``GET /api/wall?since=&until=`` (supervisors, admins).

The period's figures per queue and per agent come from SQL over the whole
call log (:mod:`core.stats`, no row limit; closed days added up from their kept
figures, :mod:`core.rollups`); the live ones (callers waiting
now and since when, members, agents' state and pauses) from the AMI
(:class:`crmcomms.telephony.presence.Presence` of the process holding the link,
through :class:`crmcomms.telephony.desk.CallDesk`), ``as_of`` the PBX's time of
the last event they reflect. Agents are named by their agent's name. The
service level threshold is ``wall.service_level_seconds`` unless
``?threshold=`` says otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from core.errors import InvalidInput
from core.phones import display_number
from core.rollups import wall_figures
from core.stats import Period, agent_names, totals
from core.wrapup import disposition_counts
from crmcomms.keys import CALL_DESK
from crmcomms.services import services
from crmcomms.web.calls import _since
from crmcomms.web.http import int_param, json_response

if TYPE_CHECKING:
    from crmcomms.telephony.desk import LivePresence as Presence

MAX_PERIOD = timedelta(days=366)


def _time(request: web.Request, name: str, default: datetime) -> datetime:
    return _since(request.query.get(name), name) or default


def period_of(request: web.Request) -> Period:
    """The query's period (default: today, UTC) and service level threshold."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = _time(request, "since", today)
    until = _time(request, "until", since + timedelta(days=1))
    if not since < until <= since + MAX_PERIOD:
        raise InvalidInput("until", "must be after since, at most a year later")
    default = services(request).settings.wall.service_level_seconds
    return Period(since, until, int_param(request, "threshold", default, maximum=3600) or default)


async def get_wall(request: web.Request) -> web.Response:
    period = period_of(request)
    async with services(request).sessions() as session:
        queues, agents = await wall_figures(session, period, datetime.now(UTC))
        names = await agent_names(session)
        dispositions = await disposition_counts(session, period.since, period.until)
    desk = request.app.get(CALL_DESK)  # the live state, from the AMI link's owner
    known = set(names) | {row["extension"] for row in agents}
    presence = await desk.wall(sorted(known)) if desk is not None else None
    return json_response(
        {
            "since": period.since,
            "until": period.until,
            "service_level_seconds": period.threshold,
            "totals": totals(queues),
            "queues": merge_queues(
                queues, presence, services(request).settings.general.default_region
            ),
            "agents": merge_agents(agents, names, presence),
            "as_of": presence.as_of if presence is not None else None,
            "dispositions": dispositions,  # code -> calls of the period (core.wrapup)
            "live": presence is not None,
        }
    )


def merge_queues(
    figures: list[dict[str, Any]], presence: Presence | None, region: str = "ZZ"
) -> list[dict[str, Any]]:
    """The period's figures per queue (and DID, with ``line_display``: formatted for
    ``region`` as the call JSON's numbers) with the live state of the PBX's queues."""
    live = {q["queue"]: q for q in presence.queues_json()} if presence is not None else {}
    rows = {row["line"]: {**row, "live": None, **_display(row, region)} for row in figures}
    for name, state in live.items():
        empty = {"line": name, "queue": True, "offered": 0, "live": None}
        rows.setdefault(name, empty)["live"] = state
    return [rows[name] for name in sorted(rows)]


def _display(row: dict[str, Any], region: str) -> dict[str, str | None]:
    return {"line_display": None if row["queue"] else display_number(row["line"], region)}


def merge_agents(
    figures: list[dict[str, Any]], names: dict[str, str], presence: Presence | None
) -> list[dict[str, Any]]:
    """Every agent extension (named) with its figures and its state now."""
    by_extension = {row["extension"]: row for row in figures}
    extensions = set(names) | set(by_extension)
    if presence is not None:
        extensions |= presence.extensions()
    rows = []
    for extension in sorted(extensions):
        row = by_extension.get(extension) or {"extension": extension, "answered": 0, "missed": 0}
        state = presence.agent_json(extension) if presence is not None else None
        rows.append({**row, "name": names.get(extension), "presence": state})
    return rows


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/wall", get_wall)
