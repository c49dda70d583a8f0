"""A loopback AMI server that replays recorded Asterisk streams (tests, benchmark, demo).

It speaks enough AMI for :class:`~crmcomms.ami.client.AmiClient`: the banner,
``Login`` (checked against the constructor's username/secret; a refused login is
answered ``Authentication failed`` and the connection closed, as Asterisk does),
``Ping``, ``CoreShowChannels`` (the channels alive in what was replayed so far),
``Originate``, the call controls ``Hangup``, ``BlindTransfer``, ``Atxfer``,
``CancelAtxfer``, ``Redirect``, ``Bridge`` (refused with "No such channel" for a
channel not alive in the replay), ``QueuePause``, ``QueueStatus`` (the list in
:attr:`AmiReplayServer.queue_items`), ``Logoff``; anything else gets
``Invalid/unknown command``. With ``login_events`` a login is followed by
Asterisk's ``FullyBooted`` and ``SuccessfulAuth``; ``timestamp_events=False`` sends
every event without its ``Timestamp``, as manager.conf's ``timestampevents = no`` does. Every
action received is kept in :attr:`AmiReplayServer.actions`.

:meth:`AmiReplayServer.script` replays recorded connections instead, one per
login (outages and restarts): a recording holds the events around the
recorder's own ``CoreShowChannels`` answer; the client's ``CoreShowChannels``
gets that recorded answer, with the events recorded before it first and those
after it next, and ``Ping`` answers with the recorded time of the answer, as
the PBX's clock would. A connection can be dropped after its recording, like
the recorder's outages.

:meth:`AmiReplayServer.replay` sends the recorded event blocks, byte for byte, to
every logged-in client: as fast as possible or at the recorded pace scaled by
``speed``, ``repeat`` times or forever (``loop=True``), optionally as fresh calls
(new Uniqueid/Linkedid each round, Timestamps moved to the present).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from types import TracebackType

from crmcomms.ami.capture import CaptureBlock, Freshener, load_capture
from crmcomms.ami.framing import AmiFramer, Malformed, Message, encode_action
from crmcomms.ami.replay_channels import ChannelTable

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
#: Call-control actions answered (if their channel is alive) with Asterisk's messages.
CONTROL_ANSWERS = {
    "hangup": "Channel Hungup",
    "blindtransfer": "Transfer succeeded",
    "atxfer": "Atxfer successfully queued",
    "cancelatxfer": "Attended transfer canceled",
    "redirect": "Redirect successful",
    "bridge": "Channels have been bridged",
    "queuepause": "Interface paused successfully",
}
FLUSH_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RecordedAction:
    """An action received by the server: which connection (1, 2...), when, what."""

    connection: int
    at: float
    fields: Message


class _Client:
    def __init__(self, number: int, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.writer = writer
        self.logged_in = False

    def send(self, request: Message, fields: Message) -> None:
        """Write one response block, echoing the request's ActionID."""
        block = {"Response": fields.pop("Response")}
        if "ActionID" in request:
            block["ActionID"] = request["ActionID"]
        block.update(fields)
        self.writer.write(encode_action(block))


@dataclass(slots=True)
class RecordedConnection:
    """One recorded AMI connection split around the recorder's channel list."""

    before: list[CaptureBlock]
    listing: list[CaptureBlock]  # Response, CoreShowChannel items, Complete
    after: list[CaptureBlock]
    drop: bool  # close the connection once played (an outage follows)

    @classmethod
    def of(cls, blocks: Sequence[CaptureBlock], drop: bool) -> RecordedConnection:
        """Split ``blocks`` at the first answer to a list action (EventList)."""
        start = next(
            (i for i, b in enumerate(blocks) if b.fields.get("EventList", "").lower() == "start"),
            None,
        )
        if start is None:
            return cls(list(blocks), [], [], drop)
        action_id = blocks[start].fields.get("ActionID")
        end = start
        while end < len(blocks) and blocks[end].fields.get("ActionID") == action_id:
            end += 1
        return cls(list(blocks[:start]), list(blocks[start:end]), list(blocks[end:]), drop)

    @property
    def pbx_time(self) -> float | None:
        """When the recorded list arrived (the PBX's clock, to the millisecond on loopback)."""
        return self.listing[0].t if self.listing else None


class AmiReplayServer:
    """A real TCP AMI server on 127.0.0.1 replaying captures; see the module docstring."""

    def __init__(
        self,
        username: str = "crm",
        secret: str = "crmsecret",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        login_events: bool = False,
        timestamp_events: bool = True,
    ) -> None:
        self.actions: list[RecordedAction] = []
        # Asterisk's FullyBooted + SuccessfulAuth after a login (a user with read=security);
        # timestamp_events=False plays manager.conf's timestampevents=no (no Timestamp headers)
        self.login_events = login_events
        self.timestamp_events = timestamp_events
        self.pause_pings = False
        self.denied: set[str] = set()  # lower-case action names answered "Permission denied"
        self.connections = 0
        self.logins = 0
        self.failed_logins = 0
        self.scripts_played = 0
        self.channels = ChannelTable()
        self.queue_items: list[dict[str, str]] = []  # what QueueStatus lists
        self._scripts: list[RecordedConnection] = []
        self._scripted: dict[int, RecordedConnection] = {}  # client number -> its recording
        self._username = username
        self._secret = secret
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._clients: dict[int, _Client] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._call_ids = count(1)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("AmiReplayServer not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def logged_in_clients(self) -> int:
        """Connections currently logged in."""
        return sum(1 for client in self._clients.values() if client.logged_in)

    async def start(self) -> None:
        """Listen on host:port (port 0: a free one)."""
        self._server = await asyncio.start_server(self._serve_client, self._host, self._port)

    async def stop(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is None:
            return
        self._server.close()
        for client in self._clients.values():
            client.writer.transport.abort()
        # Aborted connections end their handlers (EOF); cancelling them instead makes
        # Python 3.11's StreamReaderProtocol log a spurious CancelledError.
        await asyncio.gather(*self._tasks)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> AmiReplayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- test controls -------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[], bool], within: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` holds (re-checked on every server change)."""
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError as exc:
            raise TimeoutError(f"AMI replay server: {what} not reached in {within:g} s") from exc

    async def wait_logged_in(self, logins: int, within: float = 5.0) -> None:
        """Wait until ``logins`` successful logins happened since start (cumulative)."""
        await self.wait_for(lambda: self.logins >= logins, within, f"{logins} login(s)")

    async def drop_clients(self) -> None:
        """Cut every connection abruptly (no Goodbye) and wait until they are gone."""
        for client in list(self._clients.values()):
            client.writer.transport.abort()
        await self.wait_for(lambda: not self._clients, what="all clients gone")

    def script(self, recordings: Sequence[Path], *, drop_between: bool = True) -> None:
        """Serve the recorded connections ``recordings`` to the next logins, in order.

        With ``drop_between`` every recording but the last ends with the server
        dropping the connection (an outage); else the client ends it (a restart).
        """
        for n, path in enumerate(recordings):
            drop = drop_between and n < len(recordings) - 1
            self._scripts.append(RecordedConnection.of(load_capture(path), drop))

    async def wait_played(self, connections: int, within: float = 10.0) -> None:
        """Wait until ``connections`` scripted connections were played in full."""
        await self.wait_for(
            lambda: self.scripts_played >= connections, within, f"{connections} recording(s)"
        )

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as one write to every logged-in client (for framing tests)."""
        await self._flush(data)

    # -- replay ------------------------------------------------------------------------

    async def replay(
        self,
        source: Path | str | bytes | Sequence[CaptureBlock],
        *,
        speed: float | None = None,
        repeat: int = 1,
        loop: bool = False,
        rewrite_ids: bool = False,
        shift_timestamps: bool = False,
    ) -> int:
        """Send a capture's event blocks to the logged-in clients; return blocks sent.

        ``speed`` None: as fast as possible; else the recorded pace times ``speed``
        (needs the ``.times.jsonl``). ``loop`` repeats until cancelled.
        """
        blocks = _as_blocks(source)
        freshener = Freshener(blocks, self._call_ids) if rewrite_ids or shift_timestamps else None
        sent = 0
        rounds = 0
        while loop or rounds < repeat:
            rounds += 1
            if freshener is not None:
                round_blocks = _refresh(blocks, freshener, rewrite_ids, shift_timestamps)
            else:
                round_blocks = list(blocks)
            sent += await self._play(round_blocks, speed)
        return sent

    async def _play(self, blocks: list[CaptureBlock], speed: float | None) -> int:
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = next((b.t for b in blocks if b.t is not None), None)
        buffer = bytearray()
        for block in blocks:
            if speed is not None and first is not None and block.t is not None:
                delay = start + (block.t - first) / speed - loop.time()
                if delay > 0:
                    await self._flush(bytes(buffer))
                    buffer.clear()
                    await asyncio.sleep(delay)
            buffer += block.raw if self.timestamp_events else _unstamped(block.fields)
            self.channels.apply(block.fields)
            if len(buffer) >= FLUSH_BYTES:
                await self._flush(bytes(buffer))
                buffer.clear()
        await self._flush(bytes(buffer))
        return len(blocks)

    async def _flush(self, data: bytes) -> None:
        """Write to every logged-in client first (synchronously), then wait for each."""
        receivers = [c for c in self._clients.values() if c.logged_in and data]
        receivers = [c for c in receivers if not c.writer.is_closing()]
        for client in receivers:
            client.writer.write(data)
        await asyncio.sleep(0)  # let clients and actions in, even when nobody reads
        for client in receivers:
            try:
                await client.writer.drain()
            except ConnectionError as exc:
                log.debug("AMI replay: client %d gone during write: %s", client.number, exc)

    # -- one connection ------------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        client = _Client(self.connections, writer)
        self._clients[client.number] = client
        self._notify()
        try:
            writer.write(BANNER)
            await self._read_actions(client, reader)
        except ConnectionError as exc:
            log.debug("AMI replay: client %d: %s", client.number, exc)
        finally:
            writer.close()
            del self._clients[client.number]
            self._tasks.discard(task)
            self._notify()

    async def _read_actions(self, client: _Client, reader: asyncio.StreamReader) -> None:
        framer = AmiFramer()
        framer.banner = ""  # clients send no banner
        while data := await reader.read(65536):
            for action in framer.feed(data):
                if isinstance(action, Malformed):
                    client.send({}, {"Response": "Error", "Message": "Missing action in request"})
                else:
                    self._answer(client, action)
            if client.writer.is_closing():
                return
            await client.writer.drain()

    def _answer(self, client: _Client, action: Message) -> None:
        self.actions.append(RecordedAction(client.number, time.monotonic(), action))
        self._notify()
        name = action.get("Action", "").lower()
        if name == "login":
            self._login(client, action)
        elif not client.logged_in or name in self.denied:
            client.send(action, {"Response": "Error", "Message": "Permission denied"})
        elif name == "ping":
            if not self.pause_pings:
                recorded = self._scripted.get(client.number)
                now = recorded.pbx_time if recorded is not None else None
                stamp = f"{now if now is not None else time.time():.6f}"
                client.send(action, {"Response": "Success", "Ping": "Pong", "Timestamp": stamp})
        elif name == "coreshowchannels" and client.number in self._scripted:
            self._play_recorded(client, action)
        elif name == "coreshowchannels":
            self._show_channels(client, action)
        elif name == "originate":
            client.send(action, {"Response": "Success", "Message": "Originate successfully queued"})
        elif name in CONTROL_ANSWERS:
            self._control(client, action, name)
        elif name == "queuestatus":
            self._queue_status(client, action)
        elif name == "logoff":
            client.send(action, {"Response": "Goodbye", "Message": "Thanks for all the fish."})
            client.writer.close()
        else:
            client.send(action, {"Response": "Error", "Message": "Invalid/unknown command"})

    def _control(self, client: _Client, action: Message, name: str) -> None:
        """Call controls: refused for a channel not alive in what was replayed (as
        Asterisk answers "No such channel"), else Asterisk's success message."""
        channel = action.get("Channel") or action.get("Channel1") or action.get("Interface", "")
        if name != "queuepause" and not self.channels.has(channel):
            client.send(action, {"Response": "Error", "Message": "No such channel"})
            return
        client.send(action, {"Response": "Success", "Message": CONTROL_ANSWERS[name]})

    def _queue_status(self, client: _Client, action: Message) -> None:
        """The QueueStatus list: :attr:`queue_items` (QueueParams/QueueMember/QueueEntry
        headers, without ActionID), then QueueStatusComplete."""
        action_id = action.get("ActionID", "")
        start = {"Response": "Success", "EventList": "start", "Message": "Queue status will follow"}
        client.send(action, start)
        for item in self.queue_items:
            client.writer.write(encode_action({**item, "ActionID": action_id}))
        done = {"Event": "QueueStatusComplete", "ActionID": action_id}
        done.update({"EventList": "Complete", "ListItems": str(len(self.queue_items))})
        client.writer.write(encode_action(done))

    def _login(self, client: _Client, action: Message) -> None:
        if action.get("Username") == self._username and action.get("Secret") == self._secret:
            client.logged_in = True
            self.logins += 1
            if self._scripts:
                self._scripted[client.number] = self._scripts.pop(0)
            client.send(action, {"Response": "Success", "Message": "Authentication accepted"})
            if self.login_events:
                self._send_login_events(client)
        else:
            self.failed_logins += 1
            client.send(action, {"Response": "Error", "Message": "Authentication failed"})
            client.writer.close()  # Asterisk hangs up after a failed login
        self._notify()

    def _send_login_events(self, client: _Client) -> None:
        booted = {"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"}
        auth = {"Event": "SuccessfulAuth", "Privilege": "security,all"}
        auth |= {"Timestamp": f"{time.time():.6f}", "Service": "AMI", "AccountID": self._username}
        client.writer.write(encode_action(booted))
        client.writer.write(encode_action(auth) if self.timestamp_events else _unstamped(auth))

    def _show_channels(self, client: _Client, action: Message) -> None:
        action_id = action.get("ActionID", "")
        start = {"Response": "Success", "EventList": "start", "Message": "Channels will follow"}
        client.send(action, start)
        items = self.channels.items(action_id)
        for item in items:
            client.writer.write(encode_action(item))
        done = {"Event": "CoreShowChannelsComplete", "ActionID": action_id}
        done.update({"EventList": "Complete", "ListItems": str(len(items))})
        client.writer.write(encode_action(done))

    def _play_recorded(self, client: _Client, action: Message) -> None:
        """The recorded connection: events before the list, the list under the
        client's ActionID, the events after it; then the outage, if one follows."""
        recorded = self._scripted.pop(client.number)
        action_id = action.get("ActionID", "")
        out = bytearray()
        for block in recorded.before:
            out += block.raw
            self.channels.apply(block.fields)  # call controls find the recorded channels
        for block in recorded.listing:
            out += encode_action({**block.fields, "ActionID": action_id})
        for block in recorded.after:
            out += block.raw
            self.channels.apply(block.fields)
        client.writer.write(bytes(out))
        self.scripts_played += 1
        if recorded.drop:
            client.writer.transport.abort()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _unstamped(fields: Message) -> bytes:
    """A block as Asterisk writes it with timestampevents = no."""
    return encode_action({k: v for k, v in fields.items() if k != "Timestamp"})


def _as_blocks(source: Path | str | bytes | Sequence[CaptureBlock]) -> list[CaptureBlock]:
    if isinstance(source, str):
        return load_capture(Path(source))
    if isinstance(source, Path | bytes):
        return load_capture(source)
    return list(source)


def _refresh(
    blocks: list[CaptureBlock], freshener: Freshener, rewrite_ids: bool, shift: bool
) -> list[CaptureBlock]:
    ids = freshener.mapping(int(time.time())) if rewrite_ids else {}
    offset = freshener.shift_to(time.time()) if shift else 0.0
    return [freshener.rewrite(block, ids, offset) for block in blocks]
