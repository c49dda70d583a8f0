"""Contacts import over HTTP: ``POST /api/contacts/import`` and its progress.

The upload is parsed (in the mail parser processes when there are some, else a
thread) and stored in batches through the database
worker (:func:`core.importer.import_rows`), so screen pops and the call log go
on while 50,000 rows come in. ``?update=1`` merges rows into the contacts with
the same e-mail (or name and number), ``?dry_run=1`` only reports. The answer
is the whole report; ``GET /api/contacts/imports`` shows the imports under way
(file, who started it, rows done of the total, rows/s, seconds left) for a
page that polls.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from aiohttp import web

from core.errors import InvalidInput
from core.importer import ImportOptions, Progress, import_rows, read_packed
from crmcomms.keys import MAIL_PARSERS
from crmcomms.services import services
from crmcomms.web.http import IDENTITY, json_response, require_role


@dataclass
class Imports:
    """The imports running in this process, for the progress endpoint."""

    running: dict[int, tuple[str, str, Progress]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def to_json(self) -> list[dict[str, object]]:
        """One entry per running import."""
        return [
            {"id": n, "file": name, "by": who, **progress.to_json()}
            for n, (name, who, progress) in self.running.items()
        ]


IMPORTS: web.AppKey[Imports] = web.AppKey("imports", Imports)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in ("1", "true", "yes")


async def post_import(request: web.Request) -> web.Response:
    """Import an uploaded CSV/XLSX (multipart field ``file``, or the raw body + ?filename=)."""
    data, filename = await _upload(request)
    # parsed in the mail parser processes when there are some: the import's CPU work
    # then does not compete with the event loop for the GIL (pops wait on it)
    parsers = request.app.get(MAIL_PARSERS)
    rows = await asyncio.get_running_loop().run_in_executor(parsers, read_packed, data, filename)
    svc = services(request)
    options = ImportOptions(
        svc.settings.general.default_region, _flag(request, "update"), _flag(request, "dry_run")
    )
    imports = request.app[IMPORTS]
    number = next(imports.ids)

    def track(progress: Progress) -> None:
        imports.running[number] = (filename, request[IDENTITY].name, progress)

    try:
        report = await import_rows(svc.db, rows, options, track, parsers)
    finally:
        imports.running.pop(number, None)
    return json_response(report.to_json())


async def get_imports(request: web.Request) -> web.Response:
    """The imports under way."""
    require_role(request, "supervisor", "admin")
    return json_response({"imports": request.app[IMPORTS].to_json()})


async def _upload(request: web.Request) -> tuple[bytes, str]:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if getattr(part, "name", None) == "file":
                return await part.read(decode=True), part.filename or "upload.csv"  # type: ignore[union-attr]
        raise InvalidInput("file", "multipart upload needs a 'file' field")
    filename = request.query.get("filename", "upload.csv")
    return await request.read(), filename


def add_import_routes(app: web.Application) -> None:
    """The progress endpoint (the upload route is registered with the contacts)."""
    app[IMPORTS] = Imports()
    app.router.add_get("/api/contacts/imports", get_imports)
