"""CPU cost of the AMI event path, one stage at a time, without sockets or a database.

Run: ``python bench/ami_parse.py [--calls N] [--rounds N]``. Renders the same
interleaved stream as ``bench/ami.py --mode throughput`` (the captures of
``tests/fixtures/ami`` with fresh ids, 64 KiB chunks) and replays it through:

- ``framing``: :class:`~crmcomms.ami.framing.AmiFramer` alone, every block parsed;
- ``+ filter``: the framer with the AMI edge's pre-parse filter (``worth_parsing``);
- ``+ tracker``: that, then every event through the edge's translation
  (:class:`~crmcomms.ami.translate.AmiTranslator`) into ``CallTracker.feed``,
  as the daemon's link and telephony consumer do.

Each figure is AMI events of the stream per second of CPU (best and median of
the rounds). The translate and tracker stages are also timed alone, on blocks
framed beforehand, to show where the time goes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from ami_load import Interleaved, Renderer, interleaved, load_templates, mix

from crmcomms.ami.framing import AmiFramer, Malformed, Message
from crmcomms.ami.translate import AmiTranslator, translate, worth_parsing
from crmcomms.pbx_events import AmiEvent
from crmcomms.telephony.tracker import CallTracker

PATTERNS = ("PJSIP/{ext}-", "SIP/{ext}-")


class Keep:
    """The edge's pre-parse filter (``AmiTranslator.keep``), with its counter."""

    def __init__(self) -> None:
        self.skipped = 0

    def __call__(self, block: str) -> bool:
        if worth_parsing(block):
            return True
        self.skipped += 1
        return False


def frame(stream: Interleaved, keep: Callable[[str], bool] | None) -> list[Message | Malformed]:
    framer = AmiFramer(keep)
    blocks: list[Message | Malformed] = []
    for chunk in stream.chunks:
        blocks += framer.feed(chunk)
    return blocks


def events_of(blocks: list[Message | Malformed]) -> list[Message | Malformed]:
    """What ``AmiLink`` hands on as events (no action is pending in the benchmark)."""
    return [b for b in blocks if type(b) is dict and "Event" in b]


def full_path(stream: Interleaved) -> int:
    """Framing, the pre-filter and the translation of the AMI edge, then the tracker."""
    tracker = CallTracker(PATTERNS)
    feed = tracker.feed
    produced = 0

    def track(event: AmiEvent) -> None:
        nonlocal produced
        produced += len(feed(event))

    edge = AmiTranslator(track)
    framer = AmiFramer(edge.keep)
    for chunk in stream.chunks:
        for block in framer.feed(chunk):
            if type(block) is dict and "Event" in block:
                edge(block)
    return produced


def translate_all(messages: list[Message | Malformed]) -> list[AmiEvent]:
    out = []
    for msg in messages:
        if isinstance(msg, dict):
            event = translate(msg)
            if event is not None:
                out.append(event)
    return out


def track_all(events: list[AmiEvent]) -> int:
    tracker = CallTracker(PATTERNS)
    feed = tracker.feed
    return sum(len(feed(event)) for event in events)


def timed(work: Callable[[], object], rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        seconds.append(time.process_time() - started)
    return seconds


def report(name: str, events: int, seconds: list[float]) -> None:
    best, median = events / min(seconds), events / statistics.median(seconds)
    per_event = 1e6 * statistics.median(seconds) / events
    print(f"{name:>24}: best {best:9,.0f}  median {median:9,.0f} events/s  ({per_event:.2f} µs)")


def main() -> None:
    """Print the rate of every stage."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    renderer = Renderer(args.agents, args.contacts, seed=args.seed)
    stream = interleaved(renderer, mix(load_templates(), args.calls), args.concurrency)
    n = stream.events
    size = sum(map(len, stream.chunks)) / 1e6
    kept = events_of(frame(stream, Keep()))
    typed = translate_all(kept)
    print(
        f"{args.calls} calls, {n} events, {size:.0f} MB in {len(stream.chunks)} chunks; "
        f"{len(kept)} pass the filter, {len(typed)} reach the tracker; x{args.rounds}"
    )
    report("framing", n, timed(lambda: frame(stream, None), args.rounds))
    report("framing + filter", n, timed(lambda: frame(stream, Keep()), args.rounds))
    report("framing+filter+tracker", n, timed(lambda: full_path(stream), args.rounds))
    report("  translate alone", n, timed(lambda: translate_all(kept), args.rounds))
    report("  tracker alone", n, timed(lambda: track_all(typed), args.rounds))


if __name__ == "__main__":
    main()
