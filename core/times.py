"""Times as the JSON of the API and the push write them: ISO 8601 in UTC with ``Z``."""

from __future__ import annotations

from datetime import datetime
from typing import overload


@overload
def json_time(value: datetime) -> str: ...
@overload
def json_time(value: None) -> None: ...
@overload
def json_time(value: datetime | None) -> str | None: ...
def json_time(value: datetime | None) -> str | None:
    """``2026-11-27T05:51:56Z`` (None stays None: an unknown time is null)."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
