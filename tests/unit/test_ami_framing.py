"""AmiFramer: AMI bytes in any chunking -> header dicts, odd lines and line ends included."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crmcomms.ami.framing import AmiFramer, Malformed, Message

CAPTURES = sorted((Path(__file__).parent.parent / "fixtures" / "ami").glob("*.ami"))


def frame(data: bytes, chunk: int | None = None) -> list[Message | Malformed]:
    framer = AmiFramer()
    framer.banner = ""  # no banner line in these streams
    if chunk is None:
        return framer.feed(data)
    out: list[Message | Malformed] = []
    for start in range(0, len(data), chunk):
        out += framer.feed(data[start : start + chunk])
    return out


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_any_chunking_gives_the_same_blocks(capture: Path) -> None:
    data = capture.read_bytes()
    whole = AmiFramer().feed(data)

    assert all(isinstance(block, dict) for block in whole)
    for chunk in (1, 7, 61, 4096):
        framer = AmiFramer()
        pieces = [
            block
            for at in range(0, len(data), chunk)
            for block in framer.feed(data[at : at + chunk])
        ]
        assert pieces == whole, chunk


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"Event: A\r\nX: 1\r\n\r\n", {"Event": "A", "X": "1"}),
        (
            b"Event: A\r\nCallerIDName: Support: 0049\r\n\r\n",
            {"Event": "A", "CallerIDName": "Support: 0049"},
        ),
        (b"Event: A\r\nK:ey: v\r\n\r\n", {"Event": "A", "K": "ey: v"}),
        (
            b"Event: A\r\nX:  padded \t\r\nY:\r\nZ:tight\r\n\r\n",
            {"Event": "A", "X": "padded", "Y": "", "Z": "tight"},
        ),
        (b"Event: A\r\nAccountCode: \r\n\r\n", {"Event": "A", "AccountCode": ""}),
        (
            b"Event: A\r\nVariable: a=1\r\nVariable: b=2\r\n\r\n",
            {"Event": "A", "Variable": "a=1\nb=2"},
        ),
        (
            "Event: A\r\nName: Jürgen Müller\r\n\r\n".encode(),
            {"Event": "A", "Name": "Jürgen Müller"},
        ),
        # A \r inside a broken UTF-8 sequence is dropped after decoding, not before.
        (b"Event: A\r\nX: \xc3\r\xbc\r\n\r\n", {"Event": "A", "X": "\ufffd\ufffd"}),
        (b"Event: A\rB\r\nX: 1\r\n\r\n", {"Event": "AB", "X": "1"}),
    ],
)
def test_header_lines(wire: bytes, expected: Message) -> None:
    assert frame(wire) == [expected]
    assert frame(wire, chunk=1) == [expected]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"this is not a header", "'this is not a header'"),
        (b"garbage", "'garbage'"),
        (b"Bad Key: v", "'Bad Key: v'"),
        (b": no key", "': no key'"),
    ],
)
def test_a_bad_line_makes_the_block_malformed(line: bytes, reason: str) -> None:
    blocks = frame(b"Event: A\r\n" + line + b"\r\nX: 1\r\n\r\nEvent: B\r\n\r\n")

    assert len(blocks) == 2
    bad = blocks[0]
    assert isinstance(bad, Malformed)
    assert bad.reason == f"not a 'Key: Value' line: {reason}"
    assert bad.raw.startswith("Event: A\n")
    assert blocks[1] == {"Event": "B"}


def test_odd_block_ends() -> None:
    wire = (
        b"Event: A\r\nX: 1\r\n\n"  # the stray terminator some Asterisk versions send
        b"Event: B\nY: 2\n\n"  # bare line feeds
        b"Event: C\r\n\r\n\r\n\r\n"  # extra blank lines
        b"Event: D\r\n\r\n"
    )
    expected = [{"Event": "A", "X": "1"}, {"Event": "B", "Y": "2"}, {"Event": "C"}, {"Event": "D"}]

    assert frame(wire) == expected
    assert frame(wire, chunk=1) == expected


def test_utf8_character_split_between_reads() -> None:
    framer = AmiFramer()
    framer.banner = ""

    assert framer.feed(b"Event: A\r\nName: J\xc3") == []
    assert framer.feed(b"\xbcrgen\r\n") == []
    assert framer.feed(b"\r\n") == [{"Event": "A", "Name": "Jürgen"}]


def test_banner_and_refused_blocks() -> None:
    seen: list[str] = []

    def keep(block: str) -> bool:
        seen.append(block)
        return not block.startswith("Event: Skip")

    framer = AmiFramer(keep)
    blocks = framer.feed(
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
        b"Event: Skip\r\nX: 1\r\n\r\n"
        b"Event: Keep\r\nX: 2\r\n\r\n"
    )

    assert framer.banner == "Asterisk Call Manager/11.0.0"
    assert blocks == [
        {"Response": "Success", "Message": "Authentication accepted"},
        {"Event": "Keep", "X": "2"},
    ]
    assert framer.skipped == 1
    assert seen[1] == "Event: Skip\nX: 1"  # the text, with \n line ends


@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_a_block_too_long_is_reported_once_and_skipped(chunk: int | None) -> None:
    wire = (
        b"Event: A\r\n\r\n"
        b"Event: Big\r\n" + b"X: " + b"y" * 300 + b"\r\nZ: 1\r\n" + b"W: 2\r\n" * 50 + b"\r\n"
        b"Event: B\r\n\r\n"
    )
    for long_line in (True, False):
        framer = AmiFramer(max_block=100)
        framer.banner = ""
        data = wire if long_line else wire.replace(b"y" * 300, b"y")
        step = chunk or len(data)
        out = [b for at in range(0, len(data), step) for b in framer.feed(data[at : at + step])]

        assert out[0] == {"Event": "A"}
        assert isinstance(out[1], Malformed)
        assert out[1].reason == "block longer than 100 characters, dropped"
        assert out[1].raw.startswith("Event: Big") or out[1].raw.startswith("yyy")
        assert out[2:] == [{"Event": "B"}], (chunk, long_line)


def test_a_block_split_at_its_end_after_being_dropped() -> None:
    framer = AmiFramer(max_block=10)
    framer.banner = ""

    assert len(framer.feed(b"Event: " + b"x" * 20 + b"\r\n")) == 1
    assert framer.feed(b"Y: 1\r\n\r") == []
    assert framer.feed(b"\nEvent: B\r\n\r\n") == [{"Event": "B"}]


def _seconds_to_frame(size: int, line: bytes, max_block: int) -> float:
    """Best of three: ``size`` bytes of ``line`` repeated in 512-byte reads, no block end."""
    read = line * (512 // len(line))
    best = float("inf")
    for _ in range(3):
        framer = AmiFramer(max_block=max_block)
        framer.banner = ""
        started = time.process_time()
        for _ in range(size // len(read)):
            framer.feed(read)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize(
    ("line", "max_block", "size"),
    [
        (b"x", 1 << 30, 4 << 20),  # one unterminated line, kept (issue 10: 8 MiB took 8.1 s)
        (b"Key: value\r\n", 1 << 30, 1 << 20),  # one block of many lines, kept
        (b"x", 1 << 20, 4 << 20),  # past the limit: dropped as it comes
        (b"Key: value\r\n", 1 << 20, 1 << 20),
    ],
    ids=["line", "lines", "line-dropped", "lines-dropped"],
)
def test_framing_is_linear_in_its_input(line: bytes, max_block: int, size: int) -> None:
    """CPU time at n and 4n (with room for a busy host): linear is 4, quadratic 16."""
    small = _seconds_to_frame(size, line, max_block)
    large = _seconds_to_frame(4 * size, line, max_block)

    assert large < 1.0
    assert large / small < 8, (small, large)
