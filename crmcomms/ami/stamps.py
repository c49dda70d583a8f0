"""Whether the PBX stamps its events (manager.conf ``timestampevents``), seen by ``check-config``.

Every time crmcomms logs comes from an event's ``Timestamp`` header, which Asterisk
adds only with ``timestampevents = yes`` in manager.conf's ``[general]``. No action
answers that setting to an ordinary AMI user (``Ping`` always carries a Timestamp,
``FullyBooted`` and list items never do), so the check looks at the first real event
of its short connection: ``SuccessfulAuth`` right after the login for a user with
``read = security``, else whatever call happens meanwhile. With none it says it
could not tell instead of guessing.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from crmcomms.ami.framing import Message

#: Events Asterisk writes without going through manager_event: never stamped.
UNSTAMPED = frozenset({"FullyBooted"})
MANAGER_LINE = "timestampevents = yes in the [general] section of manager.conf"
OFF = (
    f"timestampevents is off (events carry no Timestamp): every time would be unknown "
    f"— set {MANAGER_LINE}, then `asterisk -rx 'manager reload'`"
)
UNKNOWN = (
    "could not tell whether the PBX stamps its events (no event arrived during the check); "
    f"make sure of {MANAGER_LINE}"
)


class TimestampProbe:
    """Watches a connection's events; ``stamped`` is True/False once one tells, else None."""

    def __init__(self) -> None:
        self.stamped: bool | None = None
        self._told = asyncio.Event()

    def see(self, message: Message) -> None:
        """An event of the connection (the link's ``on_event``)."""
        if self.stamped is None and message.get("Event", "") not in UNSTAMPED:
            self.stamped = "Timestamp" in message
            self._told.set()

    async def settle(self, within: float) -> None:
        """Wait up to ``within`` seconds for an event that tells."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._told.wait(), within)

    @property
    def problem(self) -> str | None:
        """The line for check-config when events are definitely unstamped."""
        return OFF if self.stamped is False else None
