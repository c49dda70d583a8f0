"""Throughput of the mail parser over the test corpus, repeated.

Run: ``python bench/mailparse.py [--rounds N]``. Prints messages per second
for the header-only reader, the full parser, and, for scale, the stdlib
parser with ``policy.default`` reading every part's content.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

from core.mail import parse_headers, parse_message

CORPUS = Path(__file__).parent.parent / "tests" / "fixtures" / "mail"


def stdlib_default(raw: bytes) -> object:
    """Baseline: what a naive policy.default parse of every part costs."""
    message = message_from_bytes(raw, policy=policy.default)
    contents = []
    for part in message.walk():
        if not part.is_multipart():
            try:
                contents.append(part.get_content())
            except (LookupError, ValueError, KeyError):
                contents.append(None)
    return contents


def rate(function: Callable[[bytes], object], messages: list[bytes], rounds: int) -> float:
    """Messages per second of ``function`` over ``messages`` repeated ``rounds`` times."""
    started = time.perf_counter()
    for _ in range(rounds):
        for raw in messages:
            function(raw)
    return rounds * len(messages) / (time.perf_counter() - started)


def main() -> None:
    """Print the three rates."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    messages = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    average = sum(map(len, messages)) // len(messages)
    print(f"{len(messages)} messages, {average} bytes on average, x{args.rounds}")
    for name, function in (
        ("parse_headers", parse_headers),
        ("parse_message", parse_message),
        ("stdlib policy.default", stdlib_default),
    ):
        print(f"{name:>22}: {rate(function, messages, args.rounds):9,.0f} msg/s")


if __name__ == "__main__":
    main()
