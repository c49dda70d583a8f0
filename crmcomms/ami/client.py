"""The AMI adapter: one long-lived, self-healing Asterisk Manager connection.

:class:`AmiClient` connects, reads the banner, logs in, then hands every event
block to ``on_message`` synchronously and in wire order (the caller puts them on
a queue with one consumer). After a successful login it pings every
``ami.ping_interval``; a Ping unanswered within ``ami.ping_timeout`` while not one
byte arrived (a black-holed link), a read error or EOF means the link is lost, and
it reconnects as :mod:`crmcomms.ami.backoff` schedules (within a second after a
blink, slower only for a PBX long gone). A refused login is logged once as an
ERROR and retried at the cap delay.
State changes are logged once each, never once per attempt; the secret never is.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from crmcomms.ami.backoff import ReconnectBackoff
from crmcomms.ami.errors import (
    AmiActionError,
    AmiError,
    AmiLoginRefused,
    AmiNotConnected,
    AmiTimeout,
)
from crmcomms.ami.framing import Keep, Malformed, Message
from crmcomms.ami.link import AmiLink, OnList, open_link
from crmcomms.ami.stamps import TimestampProbe
from crmcomms.config import AmiSettings

log = logging.getLogger(__name__)

MIN_HANDSHAKE_TIMEOUT = 5.0


class AmiClient:
    """Owns the AMI connection until cancelled; exposes its state for health and metrics.

    ``connected`` is True while logged in (``link_changed`` is set whenever it flips;
    waiters clear it); ``last_error`` is the last reason the link
    was down (None once it is up); ``messages_received`` counts event blocks handed to
    ``on_message`` (blocks refused by ``keep`` are never parsed nor counted there);
    ``malformed_blocks`` unparsable blocks skipped; ``connect_attempts``
    every connection attempt; ``reconnects`` successful logins after the first one;
    ``since`` when the link last went up or down (wall clock, for /readyz).
    ``on_connected`` is awaited with the client after each login (to send actions).
    """

    def __init__(
        self,
        settings: AmiSettings,
        on_message: Callable[[Message], None],
        *,
        on_connected: Callable[[AmiClient], Awaitable[None]] | None = None,
        random: Callable[[], float] = _random.random,
        keep: Keep | None = None,
    ) -> None:
        self.connected = False
        self.link_changed = asyncio.Event()
        self.last_error: str | None = None
        self._received_before = 0  # event blocks of the links before the current one
        self._reading: AmiLink | None = None  # the connection events come from, logged in or not
        self.malformed_blocks = 0
        self.connect_attempts = 0
        self.reconnects = 0
        self._settings = settings
        self._on_message = on_message
        self._on_connected = on_connected
        self._keep = keep
        self._random = random
        self._where = f"{settings.host}:{settings.port}"
        self._link: AmiLink | None = None
        self._delays = ReconnectBackoff(settings.reconnect_max_delay, random, time.monotonic())
        self.since = datetime.now(UTC)
        self._logged_reason: str | None = None
        self._down_since: float | None = None
        self._down_at_attempt = 0
        self._ever_up = False

    @property
    def messages_received(self) -> int:
        """Event blocks handed to ``on_message``, over every connection."""
        link = self._reading
        return self._received_before + (0 if link is None else link.events_received)

    @property
    def bytes_received(self) -> int:
        """Bytes read on the current connection (0 when down)."""
        return 0 if self._link is None else self._link.bytes_received

    async def run(self) -> None:
        """Connect, log in, serve, reconnect; forever, until cancelled."""
        while True:
            delay = await self._attempt()
            await asyncio.sleep(delay)

    async def send_action(self, action: dict[str, str], timeout: float = 10) -> dict[str, str]:
        """Send ``action`` (an ActionID is added) and return its Response block.

        Raises :class:`AmiNotConnected`, :class:`AmiActionError` or :class:`AmiTimeout`.
        """
        response, _ = await self._require_link().request(action, timeout)
        return response

    async def send_list_action(
        self,
        action: dict[str, str],
        timeout: float = 10,
        *,
        on_list: OnList | None = None,
    ) -> list[dict[str, str]]:
        """Send a list action (e.g. ``CoreShowChannels``); return its items, in order.

        The items carry our ActionID and are not passed to ``on_message``; ``on_list``
        gets them at their place in the stream: after every event read before the
        list's last block, before any event read after it.
        """
        link = self._require_link()
        _, items = await link.request(action, timeout, is_list=True, on_list=on_list)
        return items

    # -- one connection ----------------------------------------------------------

    async def _attempt(self) -> float:
        """Run one connection from connect to loss; return the delay before the next one."""
        self.connect_attempts += 1
        try:
            link = await self._open()
        except AmiLoginRefused as exc:
            self._note_refused(str(exc))
            return self._settings.reconnect_max_delay * (0.5 + 0.5 * self._random())
        except AmiError as exc:
            self._note_down(str(exc))
            return self._backoff()
        try:
            reason = await self._serve(link)
        finally:
            self._stop_reading(link)
            self._link = None
            self.connected = False
            self.link_changed.set()
            link.close("client stopped")
        self._note_down(f"connection to {self._where} lost: {reason}")
        return self._backoff()

    async def _open(self) -> AmiLink:
        timeout = max(self._settings.ping_timeout, MIN_HANDSHAKE_TIMEOUT)
        host, port = self._settings.host, self._settings.port
        # the link hands events straight to on_message: the client is not on their path
        on_message, keep = self._on_message, self._keep
        link = await open_link(host, port, timeout, on_message, self._skip_malformed, keep)
        self._reading = link
        try:
            await link.login(
                self._settings.username, self._settings.secret.get_secret_value(), timeout
            )
        except BaseException:
            link.close("login failed")
            self._stop_reading(link)
            raise
        return link

    def _stop_reading(self, link: AmiLink) -> None:
        """The connection is over: its events count among the earlier ones."""
        self._received_before += link.events_received
        self._reading = None

    async def _serve(self, link: AmiLink) -> str:
        """Serve a logged-in link until it is lost; return why."""
        self._link = link
        self.connected = True
        self.link_changed.set()
        self._note_up()
        keep_alive = asyncio.create_task(self._keep_alive(link), name="ami-keep-alive")
        try:
            await self._call_on_connected()
            return await asyncio.shield(link.closed)
        finally:
            keep_alive.cancel()
            await asyncio.wait([keep_alive])

    async def _call_on_connected(self) -> None:
        if self._on_connected is None:
            return
        try:
            await self._on_connected(self)
        except AmiError as exc:
            log.warning("AMI on_connected hook failed: %s", exc)
        except Exception:
            log.exception("AMI on_connected hook raised; the link stays up")

    async def _keep_alive(self, link: AmiLink) -> None:
        """Ping every ``ping_interval``; close the link when a Ping goes unanswered for
        ``ping_timeout`` and not one byte arrived meanwhile (a black-holed link). A late
        answer while events keep coming is a busy PBX, not a dead link."""
        interval, timeout = self._settings.ping_interval, self._settings.ping_timeout
        while True:
            await asyncio.sleep(interval)
            received = link.bytes_received
            try:
                await link.request({"Action": "Ping"}, timeout)
            except AmiTimeout:
                if link.bytes_received == received:
                    link.close(f"no reply to Ping within {timeout:g} s")
                    return
                log.debug("AMI Ping answered late, but the link is busy (alive)")
            except AmiNotConnected:
                return
            except AmiError as exc:
                log.debug("AMI Ping answered with an error (link alive): %s", exc)

    def _require_link(self) -> AmiLink:
        if self._link is None or not self.connected:
            raise AmiNotConnected(f"AMI link to {self._where} is down: {self.last_error}")
        return self._link

    # -- inbound blocks (hot path) -----------------------------------------------

    def _skip_malformed(self, block: Malformed) -> None:
        self.malformed_blocks += 1
        log.warning("AMI: skipped a malformed block from %s: %s", self._where, block.reason)

    # -- state changes, logged once ------------------------------------------------

    def _backoff(self) -> float:
        now = time.monotonic()
        if self._delays.link_down(now):
            self.since = datetime.now(UTC)
        return self._delays.next_delay(now)

    def _note_up(self) -> None:
        suffix = ""
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            attempts = self.connect_attempts - self._down_at_attempt
            suffix = f" after {attempts} attempt(s), {down:.1f} s down"
        if self._ever_up:
            self.reconnects += 1
        log.info(
            "AMI link up: logged in to %s as %s%s", self._where, self._settings.username, suffix
        )
        self._ever_up = True
        self._delays.link_up(time.monotonic())
        self.since = datetime.now(UTC)
        self._logged_reason = None
        self._down_since = None
        self.last_error = None

    def _note_down(self, reason: str) -> None:
        self.last_error = reason
        self._mark_down()
        if reason == self._logged_reason:
            log.debug("AMI attempt %d failed: %s", self.connect_attempts, reason)
            return
        self._logged_reason = reason
        log.warning("AMI link down: %s; retrying", reason)

    def _mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._down_at_attempt = self.connect_attempts

    def _note_refused(self, message: str) -> None:
        self.last_error = f"login refused: {message}"
        self._mark_down()
        if self._logged_reason == self.last_error:
            log.debug("AMI attempt %d: login still refused", self.connect_attempts)
            return
        self._logged_reason = self.last_error
        log.error(
            "AMI login as %s refused by %s: %s — check ami.username / ami.secret",
            self._settings.username,
            self._where,
            message,
        )


async def check_login(
    settings: AmiSettings,
    timeout: float = 5,
    actions: Sequence[dict[str, str]] = (),
    probe: TimestampProbe | None = None,
    stamp_wait: float = 1.0,
) -> str | None:
    """Try one connect + Login, then each list action in ``actions`` (for ``check-config``);
    with a ``probe``, wait up to ``stamp_wait`` s for an event that shows whether the
    PBX stamps its events.

    None if all went fine, else one human line (a refused action names the
    manager.conf ``write`` class it probably lacks).
    """

    def ignore(_: object) -> None:
        return None

    on_event = probe.see if probe is not None else ignore
    try:
        link = await open_link(settings.host, settings.port, timeout, on_event, ignore)
    except AmiError as exc:
        return str(exc)
    name = "Login"
    try:
        await link.login(settings.username, settings.secret.get_secret_value(), timeout)
        for action in actions:
            name = action.get("Action", "action")
            await link.request(action, timeout, is_list=True)
        if probe is not None:
            await probe.settle(stamp_wait)
    except AmiLoginRefused as exc:
        return f"login refused: {exc}"
    except AmiActionError as exc:
        return f"{name} refused: {exc} (check the write= classes of the AMI user)"
    except AmiError as exc:
        return str(exc)
    finally:
        link.close("check done")
    return None
