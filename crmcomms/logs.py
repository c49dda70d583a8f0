"""Logging to stderr, one line per event; journald adds its own timestamps.

``general.log_format = "json"`` writes one JSON object per line instead, for
journald/Loki/Elastic: ``ts``, ``level``, ``logger``, ``msg``, the traceback as
``exc``, and every field a log call passes with ``extra=`` (``client``,
``route``...) or that is set for the current task with :func:`log_fields`.

Log context: a worker that handles one call or one mailbox says so once, where
its work for it begins (``with log_fields(linkedid=...)`` around the handling of
an AMI event, ``with log_fields(mailbox=...)`` around a mailbox worker's run), and
every line logged inside, by any module, carries the field: no call site passes
it by hand. The fields live in a :mod:`contextvars` variable, so they follow the
asyncio task (and the tasks it starts) and never leak to another task.
:class:`ContextFilter` stamps them on each record (``record.linkedid``), the JSON
form writes them as fields and the text form appends them as ``[key=value]``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_FIELDS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "log_fields", default=_EMPTY
)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line written by this task (and the tasks it starts)
    inside the block; ``None`` values are left out, an inner value replaces an outer one."""
    clash = _STANDARD.intersection(fields)
    if clash:
        raise ValueError(f"log field(s) {sorted(clash)} would overwrite the log record's own")
    given = {key: value for key, value in fields.items() if value is not None}
    if not given:
        yield
        return
    token = _FIELDS.set(MappingProxyType({**_FIELDS.get(), **given}))
    try:
        yield
    finally:
        _FIELDS.reset(token)


def stamp(record: logging.LogRecord) -> Mapping[str, Any]:
    """Put the context's fields on ``record`` (an ``extra=`` of the same name wins);
    returns the fields."""
    fields = _FIELDS.get()
    for key, value in fields.items():
        if key not in record.__dict__:
            setattr(record, key, value)
    return fields


class ContextFilter(logging.Filter):
    """Stamps the :func:`log_fields` of the logging task on every record it passes.

    A handler filter runs in the task that logs (logging is synchronous), so the
    fields are those of the code that wrote the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        stamp(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the record's extra and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp(record)
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic one-line form, the context fields appended as ``[linkedid=... mailbox=...]``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = stamp(record)
        text = super().format(record)
        if not fields:
            return text
        context = " ".join(f"{key}={getattr(record, key)}" for key in fields)
        first, newline, rest = text.partition("\n")  # a traceback stays below the line
        return f"{first} [{context}]{newline}{rest}"


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` as text (without timestamps under journald) or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        text = "%(levelname)s %(name)s: %(message)s"
        if "JOURNAL_STREAM" not in os.environ:
            text = "%(asctime)s " + text
        handler.setFormatter(TextFormatter(text))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiosqlite", "asyncio", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
