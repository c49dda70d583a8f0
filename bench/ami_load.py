"""Load side of ``bench/ami.py``: realistic AMI call streams made from the recorded captures.

Every call of the benchmark is one of the seven captures of ``tests/fixtures/ami``
rendered again with fresh values, so that hundreds of copies can be in progress
at once without colliding in the tracker or the database:

- Uniqueid/Linkedid values (every header, as :class:`crmcomms.ami.capture.Freshener`
  finds them), channel names (``PJSIP/101-00000029``) and bridge UUIDs: new per call;
- ``Timestamp`` headers: moved to the time the call is played;
- the agents' extensions (101, 102): seeded agents picked at random per call;
- the customer's number (the caller of inbound calls, the callee of outbound ones, as
  written in the capture: ``+49...``, ``0049...`` or ``0...``): a seeded contact's
  number written the same way.

Each capture becomes a :class:`Template` once (the blocks as ``%`` format strings with
their slots), and rendering a call is one ``bytes % tuple`` per block. The blocks
after which the tracker pops a screen (``CallRinging``) are found offline by feeding
the capture to the real :class:`~crmcomms.telephony.tracker.CallTracker`, and
:func:`check_template` proves a rendered call still gives the same call events.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from crmcomms.ami.capture import load_capture
from crmcomms.ami.translate import MalformedEvent, translate
from crmcomms.telephony.calls import CallEnded, CallEvent, CallRinging
from crmcomms.telephony.tracker import CallTracker

CAPTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "ami"
PATTERNS = ("PJSIP/{ext}-", "SIP/{ext}-")
CAPTURE_EXTENSIONS = ("101", "102", "103")
CHUNK_BYTES = 64 * 1024
_ID_VALUE = re.compile(r"^\d+\.\d+$")

Slot = tuple[str, str]  # (kind, value as recorded)


def contact_number(index: int) -> str:
    """The E.164 number of seeded contact ``index`` (Berlin, 030 2xxxxxxx)."""
    return f"+49302{index:07d}"


def agent_extension(index: int) -> str:
    """The extension of seeded agent ``index``."""
    return str(2000 + index)


def written_like(e164: str, recorded: str) -> str:
    """``e164`` (a +49 number) written the way ``recorded`` was: +49..., 0049... or 0..."""
    if recorded.startswith("+"):
        return e164
    if recorded.startswith("00"):
        return "00" + e164[1:]
    return "0" + e164[3:]


@dataclass(frozen=True)
class Template:
    """One capture as format strings: ``blocks[i] % values`` gives event block ``i``."""

    name: str
    blocks: tuple[tuple[bytes, tuple[Slot, ...]], ...]
    slots: tuple[Slot, ...]
    times: tuple[float, ...]  # seconds from the first block, as recorded
    linkedid: str
    pops: tuple[tuple[int, str], ...]  # (block index, capture extension that rings)
    customer: str | None

    @property
    def events(self) -> int:
        return len(self.blocks)


@dataclass(frozen=True)
class Call:
    """One rendered call: its bytes per block, its Linkedid and its pops."""

    scenario: str
    linkedid: str
    blocks: list[bytes]
    times: tuple[float, ...]
    pops: tuple[tuple[int, str], ...]  # (block index, agent extension that rings)


def load_templates() -> list[Template]:
    """Every capture of ``tests/fixtures/ami`` as a checked template."""
    templates = [_template(path) for path in sorted(CAPTURES.glob("*.ami"))]
    for template in templates:
        check_template(template)
    return templates


def _customer(name: str) -> str | None:
    facts = json.loads((CAPTURES / f"{name}.json").read_text())
    if facts["direction"] == "inbound":
        return str(facts["caller_number"])
    if facts["direction"] == "outbound":
        return str(facts["dialed_number"])
    return None


def _template(path: Path) -> Template:
    # Only Event blocks: the click-to-dial capture also holds the Response to the
    # recorder's own Originate, which Asterisk sends to no other connection.
    blocks = [b for b in load_capture(path) if "Event" in b.fields]
    ids = {v for b in blocks for k, v in b.fields.items() if _is_id(k, v)}
    customer = _customer(path.stem)
    token = _token_pattern(ids, customer)
    rendered = tuple(_format(block.raw, token) for block in blocks)
    slots = tuple(dict.fromkeys(slot for _, keys in rendered for slot in keys))
    first = blocks[0].t or 0.0
    # Recorded arrival times, made non-decreasing so a call's blocks keep their order.
    times = tuple(itertools.accumulate(((b.t or first) - first for b in blocks), max))
    linkedid, pops = _tracker_facts([b.fields for b in blocks])
    return Template(path.stem, rendered, slots, times, linkedid, pops, customer)


def _is_id(key: str, value: str) -> bool:
    return key.lower().endswith(("uniqueid", "linkedid")) and bool(_ID_VALUE.match(value))


def _token_pattern(ids: set[str], customer: str | None) -> re.Pattern[bytes]:
    """Everything that must change per call, in one alternation (first match wins)."""
    alternatives = [
        rb"(?P<ts>(?<=Timestamp: )\d+\.\d+)",
        rb"(?P<chan>PJSIP/[A-Za-z0-9_]+-[0-9a-f]{8})",
        rb"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        rb"(?P<ext>(?<![\d.])(?:"
        + b"|".join(e.encode() for e in CAPTURE_EXTENSIONS)
        + rb")(?!\d))",
    ]
    if ids:
        longest_first = sorted(ids, key=len, reverse=True)
        joined = b"|".join(re.escape(i.encode()) for i in longest_first)
        alternatives.append(rb"(?P<id>(?<![\d.])(?:" + joined + rb")(?!\d))")
    if customer:
        alternatives.append(rb"(?P<num>(?<![\d+])" + re.escape(customer.encode()) + rb"(?!\d))")
    return re.compile(b"|".join(alternatives))


def _format(raw: bytes, token: re.Pattern[bytes]) -> tuple[bytes, tuple[Slot, ...]]:
    parts: list[bytes] = []
    keys: list[Slot] = []
    start = 0
    for match in token.finditer(raw):
        kind = match.lastgroup
        assert kind is not None
        parts.append(raw[start : match.start()].replace(b"%", b"%%"))
        parts.append(b"%s")
        keys.append((kind, match.group().decode()))
        start = match.end()
    parts.append(raw[start:].replace(b"%", b"%%"))
    return b"".join(parts), tuple(keys)


def _tracker_facts(messages: Sequence[dict[str, str]]) -> tuple[str, tuple[tuple[int, str], ...]]:
    """The call's Linkedid and (block index, extension) of every pop, from the real tracker."""
    tracker = CallTracker(PATTERNS)
    pops = []
    linkedids = set()
    for index, message in enumerate(messages):
        for event in _track(tracker, message):
            linkedids.add(event.call.linkedid)
            if isinstance(event, CallRinging):
                pops.append((index, event.agent))
    if len(linkedids) != 1:
        raise ValueError(f"a capture should be one call, got Linkedids {linkedids}")
    return linkedids.pop(), tuple(pops)


class Renderer:
    """Renders calls with fresh ids, the seeded agents and contacts, and a clock."""

    def __init__(self, agents: int, contacts: int, seed: int = 1) -> None:
        self._agents = [agent_extension(i) for i in range(agents)]
        self._contacts = contacts
        self._random = random.Random(seed)
        self._serials = itertools.count(1)
        self._stamp = int(time.time())

    def render(self, template: Template, at: float) -> Call:
        """``template`` as a new call whose first block is stamped ``at`` (unix time)."""
        values = self._values(template, at)
        blocks = [fmt % tuple(values[key] for key in keys) for fmt, keys in template.blocks]
        linkedid = values[("id", template.linkedid)].decode()
        exts = {slot[1]: values[slot].decode() for slot in template.slots if slot[0] == "ext"}
        pops = tuple((index, exts[ext]) for index, ext in template.pops)
        return Call(template.name, linkedid, blocks, template.times, pops)

    def _values(self, template: Template, at: float) -> dict[Slot, bytes]:
        shift = at - float(_first_timestamp(template))
        agents = dict(zip(CAPTURE_EXTENSIONS, self._random.sample(self._agents, 3), strict=True))
        number = contact_number(self._random.randrange(self._contacts))
        values = {}
        for kind, recorded in template.slots:
            values[(kind, recorded)] = self._value(kind, recorded, shift, agents, number, template)
        return values

    def _value(
        self,
        kind: str,
        recorded: str,
        shift: float,
        agents: dict[str, str],
        number: str,
        template: Template,
    ) -> bytes:
        serial = next(self._serials)
        if kind == "ts":
            return b"%.6f" % (float(recorded) + shift)
        if kind == "id":
            return f"{self._stamp}.{serial}".encode()
        if kind == "chan":
            name = recorded[len("PJSIP/") : -9]
            return f"PJSIP/{agents.get(name, name)}-{serial:08x}".encode()
        if kind == "uuid":
            return f"{serial:08x}-0000-4000-8000-{serial:012x}".encode()
        if kind == "ext":
            return agents[recorded].encode()
        assert template.customer is not None
        return written_like(number, template.customer).encode()


def _first_timestamp(template: Template) -> str:
    return next(value for kind, value in template.slots if kind == "ts")


def _track(tracker: CallTracker, message: dict[str, str]) -> list[CallEvent]:
    """One message through the AMI edge's translation into the tracker."""
    try:
        event = translate(message)
    except MalformedEvent:
        return []
    return [] if event is None else tracker.feed(event)


def check_template(template: Template) -> None:
    """A rendered call must give the tracker the same pops and exactly one end."""
    call = Renderer(agents=10, contacts=10).render(template, time.time())
    tracker = CallTracker(PATTERNS)
    pops, ended = [], 0
    for index, block in enumerate(call.blocks):
        message = _parse(block)
        for event in _track(tracker, message):
            assert event.call.linkedid == call.linkedid, (template.name, event)
            if isinstance(event, CallRinging):
                pops.append((index, event.agent))
            ended += isinstance(event, CallEnded)
    if tuple(pops) != call.pops or ended != 1:
        raise AssertionError(f"{template.name}: rendered call gives pops {pops}, ends {ended}")


def _parse(block: bytes) -> dict[str, str]:
    lines = block.decode().replace("\r", "").strip("\n").split("\n")
    fields: dict[str, str] = {}
    for key, _, value in (line.partition(":") for line in lines):
        fields[key] = f"{fields[key]}\n{value.strip()}" if key in fields else value.strip()
    return fields


# -- streams -----------------------------------------------------------------------


@dataclass
class Interleaved:
    """A throughput stream: the bytes in ~64 KiB chunks, and what they hold."""

    chunks: list[bytes]
    events: int
    linkedids: list[str]


def mix(templates: Sequence[Template], calls: int) -> Iterator[Template]:
    """``calls`` templates, every capture in turn."""
    return itertools.islice(itertools.cycle(templates), calls)


def interleaved(renderer: Renderer, plan: Iterator[Template], concurrency: int) -> Interleaved:
    """Calls played ``concurrency`` at a time, one block of each in turn.

    A lane whose call has ended starts the next call, so ``concurrency`` calls are
    in progress at every moment of the stream (until the plan runs out).
    """
    now = time.time()
    linkedids: list[str] = []

    def next_call() -> Iterator[bytes] | None:
        template = next(plan, None)
        if template is None:
            return None
        call = renderer.render(template, now)
        linkedids.append(call.linkedid)
        return iter(call.blocks)

    lanes = [lane for _ in range(concurrency) if (lane := next_call()) is not None]
    chunks, buffer, events = [], bytearray(), 0
    while lanes:
        still = []
        for lane in lanes:
            block = next(lane, None)
            if block is None and (lane := next_call()) is not None:
                block = next(lane)
            if block is None:
                continue
            buffer += block
            events += 1
            still.append(lane)
        lanes = still
        if len(buffer) >= CHUNK_BYTES:
            chunks.append(bytes(buffer))
            buffer.clear()
    chunks.append(bytes(buffer))
    return Interleaved(chunks, events, linkedids)


@dataclass
class Paced:
    """A paced stream: block ``i`` is due ``at[i]`` s after the start; ``pops`` per block."""

    at: list[float]
    data: list[bytes]
    pops: list[tuple[tuple[str, str], ...]]  # ((linkedid, agent extension), ...)
    linkedids: list[str]


def paced(renderer: Renderer, plan: Iterator[Template], rate: float, lead: float) -> Paced:
    """A new call every ``1/rate`` s, each at its recorded pace; starts ``lead`` s from now."""
    now = time.time() + lead
    entries: list[tuple[float, bytes, tuple[tuple[str, str], ...]]] = []
    linkedids = []
    for number, template in enumerate(plan):
        start = number / rate
        call = renderer.render(template, now + start)
        linkedids.append(call.linkedid)
        rings: dict[int, list[tuple[str, str]]] = {}
        for index, agent in call.pops:
            rings.setdefault(index, []).append((call.linkedid, agent))
        for index, block in enumerate(call.blocks):
            entries.append((start + call.times[index], block, tuple(rings.get(index, ()))))
    entries.sort(key=lambda entry: entry[0])
    return Paced(
        [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries], linkedids
    )
