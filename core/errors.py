"""Errors raised by the CRM core.

Library exceptions (SQLAlchemy, phonenumbers, openpyxl...) are translated once,
where they occur, into this hierarchy; callers only ever catch these::

    CoreError                 base of everything the core raises on purpose
    ├── NotFound              the thing asked for does not exist (HTTP 404)
    ├── Conflict              it would clash with existing data (HTTP 409)
    ├── InvalidInput          a field has a bad value; names the field (HTTP 422)
    └── AuthError             unknown user, bad password or token (HTTP 401)
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of all errors the core raises on purpose."""


class NotFound(CoreError):
    """The requested object does not exist."""


class Conflict(CoreError):
    """The change would clash with existing data."""


class InvalidInput(CoreError):
    """A value given by the user is not acceptable.

    ``field`` is the path of the offending value, e.g. ``emails.0.address``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[str, str]]:
        # raised in a worker process too (imports parse there): pickled by its fields
        return type(self), (self.field, self.message)


class AuthError(CoreError):
    """Authentication failed: unknown user, wrong password, bad or expired token."""
