"""One AMI TCP connection: bytes in, responses matched to actions, events handed on.

An :class:`AmiLink` is an asyncio protocol over a single connection. It has no
reconnect logic and no timers of its own (that is :class:`~crmcomms.ami.client.AmiClient`).
Every received byte goes through :class:`~crmcomms.ami.framing.AmiFramer`; each block
is then either the answer to an action we sent (matched by ``ActionID``), an item of
a list action (``EventList: start`` ... ``EventList: Complete``, also matched by
``ActionID``), or an event, passed synchronously to ``on_event`` in wire order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from itertools import count
from typing import cast

from crmcomms.ami.errors import (
    AmiActionError,
    AmiLoginRefused,
    AmiNotConnected,
    AmiTimeout,
)
from crmcomms.ami.framing import AmiFramer, Keep, Malformed, Message, encode_action

log = logging.getLogger(__name__)

BANNER_PREFIX = "Asterisk Call Manager"


OnList = Callable[[list[Message]], None]
"""Called with a list action's items the moment its last block is read."""


class _Pending:
    """An action waiting for its Response (and, for list actions, its items).

    ``on_list`` gets the items synchronously when the list completes, before any
    later block of the stream is handed on: a snapshot such as CoreShowChannels
    keeps its place among the events (awaiting ``done`` would see it late).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, is_list: bool, on_list: OnList | None = None
    ) -> None:
        self.is_list = is_list
        self.on_list = on_list
        self.response: Message | None = None
        self.items: list[Message] = []
        self.done: asyncio.Future[tuple[Message, list[Message]]] = loop.create_future()

    def accept(self, message: Message) -> bool:
        """Take ``message`` if it belongs to this action; False lets it through as an event."""
        if self.done.done():
            return False
        if self.response is None and "Response" in message:
            self.response = message
            if not (self.is_list and message.get("EventList", "").lower() == "start"):
                self.done.set_result((message, self.items))
            return True
        if self.is_list and self.response is not None and "Event" in message:
            if message.get("EventList", "").lower() == "complete":
                if self.on_list is not None:
                    self.on_list(self.items)
                self.done.set_result((self.response, self.items))
            else:
                self.items.append(message)
            return True
        return False


class AmiLink(asyncio.Protocol):
    """A connected AMI socket; create it with :func:`open_link`."""

    def __init__(
        self,
        where: str,
        on_event: Callable[[Message], None],
        on_malformed: Callable[[Malformed], None],
        keep: Keep | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.where = where
        self.bytes_received = 0
        self.events_received = 0  # event blocks handed to ``on_event``
        self.closed: asyncio.Future[str] = loop.create_future()
        self._loop = loop
        self._on_event = on_event
        self._on_malformed = on_malformed
        self._framer = AmiFramer(keep)
        self._banner: asyncio.Future[str] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._pending: dict[str, _Pending] = {}
        self._ids = count(1)
        self._id_prefix = f"crm-{uuid.uuid4().hex[:8]}"
        self._close_reason: str | None = None

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not derive from asyncio.Transport)
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        blocks = self._framer.feed(data)
        if not self._banner.done() and self._framer.banner is not None:
            self._banner.set_result(self._framer.banner)
        if self._pending:
            for block in blocks:
                self._dispatch(block)
            return
        on_event = self._on_event  # hot path: nothing awaits a response
        events = 0
        for block in blocks:
            if type(block) is dict and "Event" in block:
                on_event(block)
                events += 1
            else:
                self._dispatch(block)
        self.events_received += events

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_reason is not None:
            reason = self._close_reason
        elif exc is None:
            reason = "connection closed by the server"
        else:
            reason = f"read error: {exc}"
        error = AmiNotConnected(f"AMI link to {self.where} lost: {reason}")
        if not self._banner.done():
            self._banner.set_exception(
                AmiNotConnected(f"{self.where} closed the connection before the AMI banner")
            )
        for pending in self._pending.values():
            if not pending.done.done():
                pending.done.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(reason)

    # -- public ----------------------------------------------------------------

    async def wait_banner(self, seconds: float) -> str:
        """The banner line; raises if none (or not an AMI one) arrives in time."""
        try:
            async with asyncio.timeout(seconds):
                banner = await self._banner
        except TimeoutError as exc:
            raise AmiTimeout(
                f"no AMI banner received within {seconds:g} s from {self.where}"
            ) from exc
        if not banner.startswith(BANNER_PREFIX):
            raise AmiNotConnected(f"{self.where} does not speak AMI (first line {banner[:60]!r})")
        return banner

    async def login(self, username: str, secret: str, seconds: float) -> None:
        """Send ``Login``; raises :class:`AmiLoginRefused` with Asterisk's message if refused."""
        action = {"Action": "Login", "Username": username, "Secret": secret, "Events": "on"}
        try:
            await self.request(action, seconds)
        except AmiLoginRefused:
            raise
        except AmiActionError as exc:
            raise AmiLoginRefused(str(exc)) from exc

    async def request(
        self,
        action: dict[str, str],
        seconds: float,
        *,
        is_list: bool = False,
        on_list: OnList | None = None,
    ) -> tuple[Message, list[Message]]:
        """Send ``action`` with a fresh ActionID; return its Response (and list items).

        ``on_list`` (list actions) receives the items in stream order, see :class:`_Pending`.
        """
        if self.closed.done() or self._transport is None:
            raise AmiNotConnected(f"AMI link to {self.where} is closed")
        action_id = f"{self._id_prefix}-{next(self._ids)}"
        pending = _Pending(self._loop, is_list, on_list)
        self._pending[action_id] = pending
        name = action.get("Action", "action")
        try:
            self._transport.write(encode_action({**action, "ActionID": action_id}))
            async with asyncio.timeout(seconds):
                response, items = await pending.done
        except TimeoutError as exc:
            raise AmiTimeout(f"no reply to {name} within {seconds:g} s") from exc
        finally:
            del self._pending[action_id]
        if response.get("Response", "").lower() == "error":
            raise AmiActionError(response.get("Message", f"{name} failed"))
        return response, items

    def close(self, reason: str) -> None:
        """Drop the connection at once; ``closed`` resolves with ``reason``."""
        if self._close_reason is None:
            self._close_reason = reason
        if self._transport is not None:
            self._transport.abort()

    # -- internals -------------------------------------------------------------

    def _dispatch(self, block: Message | Malformed) -> None:
        if isinstance(block, Malformed):
            self._on_malformed(block)
            return
        action_id = block.get("ActionID")
        if action_id is not None:
            pending = self._pending.get(action_id)
            if pending is not None and pending.accept(block):
                return
        if "Event" in block:
            self.events_received += 1
            self._on_event(block)
        else:
            log.debug("AMI: dropped a response nobody waits for (ActionID %s)", action_id)


async def open_link(
    host: str,
    port: int,
    seconds: float,
    on_event: Callable[[Message], None],
    on_malformed: Callable[[Malformed], None],
    keep: Keep | None = None,
) -> AmiLink:
    """Connect and read the banner; errors carry a one-line human message."""
    where = f"{host}:{port}"
    link = AmiLink(where, on_event, on_malformed, keep)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            await loop.create_connection(lambda: link, host, port)
    except TimeoutError as exc:
        raise AmiTimeout(f"cannot connect to {where}: no answer within {seconds:g} s") from exc
    except OSError as exc:
        raise AmiNotConnected(f"cannot connect to {where}: {_os_reason(exc)}") from exc
    try:
        await link.wait_banner(seconds)
    except BaseException:
        link.close("no usable banner")
        raise
    return link


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc)
