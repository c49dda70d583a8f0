"""Fuzz tests (hypothesis) of the parsers that read what others send us (issue 10).

Each parser takes bytes from outside: the AMI framer (the PBX), the IMAP response
parsers and reader (a mail server), the MIME parser (anyone who sends mail), the
contacts importer (an uploaded file). Whatever the input, each answers with a
value or its own documented error, never with an exception that would kill a
worker. Bounded in time: few examples each, no example database on disk.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.import_store import prepare_row
from core.importer import RawRow, read_rows
from core.mail.parse import MailItem, parse_message
from crmcomms.ami.framing import AmiFramer, Malformed
from crmcomms.mail import imap_responses as responses
from crmcomms.mail.imap import ImapClient
from crmcomms.mail.imap_responses import ImapError, Line

T = TypeVar("T")

fuzz = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- AMI framer ------------------------------------------------------------------

_AMI_PIECES = [
    b"Event: Newchannel", b"Channel: PJSIP/101-0000001", b"Linkedid: 1700000000.1",
    b"Response: Success", b"ActionID: 7", b"Key:", b": v", b"Bad Key: v", b"garbage",
    b"Name: J\xc3\xbcrgen", b"\xc3", b"\xff\xfe", b"Variable: a=1", b"X:  y \t",
]  # fmt: skip
_AMI_ENDS = [b"\r\n", b"\n", b"\r\n\r\n", b"\r\n\n", b"\n\n", b"\r", b""]


@st.composite
def ami_streams(draw: st.DrawFn) -> bytes:
    """A stream of AMI-like lines and line ends, with now and then raw bytes."""
    parts = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(_AMI_PIECES), st.sampled_from(_AMI_ENDS)).map(b"".join),
                st.binary(max_size=40),
            ),
            max_size=40,
        )
    )
    return b"".join(parts)


def _framed(data: bytes, cuts: list[int], max_block: int) -> list[dict[str, str] | Malformed]:
    framer = AmiFramer(max_block=max_block)
    framer.banner = ""
    out: list[dict[str, str] | Malformed] = []
    start = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        out += framer.feed(data[start:cut])
        start = cut
    return out


@fuzz
@given(ami_streams(), st.lists(st.integers(0, 2000), max_size=12))
def test_ami_framer_gives_the_same_blocks_however_the_stream_is_cut(
    data: bytes, cuts: list[int]
) -> None:
    whole = _framed(data, [], 1 << 20)

    assert _framed(data, cuts, 1 << 20) == whole
    for block in whole:
        if isinstance(block, dict):
            assert all(key and " " not in key and ":" not in key for key in block)


@fuzz
@given(ami_streams(), st.lists(st.integers(0, 2000), max_size=12), st.integers(1, 60))
def test_ami_framer_with_a_small_limit_never_returns_a_long_block(
    data: bytes, cuts: list[int], max_block: int
) -> None:
    for block in _framed(data, cuts, max_block):
        if isinstance(block, dict):
            assert sum(len(k) + len(v) + 2 for k, v in block.items()) <= max_block + len(block)


# --- IMAP ----------------------------------------------------------------------

_IMAP_LINES = [
    b"* CAPABILITY IMAP4rev1 IDLE", b"* LIST (\\HasNoChildren) \"/\" INBOX",
    b'* LIST (\\Sent) "." "INBOX.Sent"', b"* LIST () NIL x", b"* 3 EXISTS", b"* EXISTS",
    b"* 99999999999 EXISTS", b"* OK [UIDVALIDITY 1]", b"* OK [UIDVALIDITY x]",
    b"* OK [UIDNEXT 18446744073709551616]", b"* 1 FETCH (UID 5 RFC822.SIZE 10)",
    b"* 1 FETCH (UID 99999999999 RFC822.SIZE 1)", b"* 2 FETCH (UID 7 BODY[] ",
    b'* NAMESPACE (("INBOX." ".")) NIL NIL', b'* NAMESPACE (("\\', b"* STATUS x (MESSAGES 1)",
    b"* 1 EXPUNGE", b"\xff\xfe", b"* LIST (\xff) \"/\" \xc3",
]  # fmt: skip


def _imap_texts() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(_IMAP_LINES),
        st.tuples(st.sampled_from(_IMAP_LINES), st.binary(max_size=20)).map(b"".join),
        st.binary(max_size=60),
    )


imap_lines = st.lists(
    st.builds(Line, _imap_texts(), st.lists(st.binary(max_size=30), max_size=2).map(tuple)),
    max_size=8,
)


def _answers_or_imap_error(parse: Callable[[], T]) -> None:
    try:
        parse()
    except ImapError:
        pass


@fuzz
@given(imap_lines, st.integers(0, 2**32), st.sets(st.integers(0, 10), max_size=4))
def test_imap_parsers_answer_or_raise_imap_error(
    lines: list[Line], after: int, wanted: set[int]
) -> None:
    _answers_or_imap_error(lambda: responses.parse_capabilities(lines))
    _answers_or_imap_error(lambda: responses.parse_folders(lines))
    _answers_or_imap_error(lambda: responses.parse_namespace(lines))
    _answers_or_imap_error(lambda: responses.parse_examine("INBOX", lines))
    _answers_or_imap_error(lambda: responses.parse_uid_sizes(lines, after))
    _answers_or_imap_error(lambda: responses.parse_bodies(lines, wanted))
    for line in lines:
        responses.status_folder(line)
        responses.is_change(line)
        _answers_or_imap_error(functools.partial(responses.literal_size, line.text, 1000))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(coro)


async def _read_all(data: bytes) -> list[Line]:
    """Every response the client's reader frames from ``data``, up to its first error."""
    reader = asyncio.StreamReader(limit=256)
    reader.feed_data(data)
    reader.feed_eof()
    client = ImapClient(reader, None, timeout=5, max_literal=64)  # type: ignore[arg-type]
    lines: list[Line] = []
    try:
        while True:
            lines.append(await client._read())
    except ImapError:
        return lines


@fuzz
@given(
    st.lists(
        st.one_of(
            _imap_texts().map(lambda text: text + b"\r\n"),
            st.sampled_from([b"{3}\r\nabc", b"{99}\r\n", b"{999999999999999}\r\n", b"{-1}\r\n"]),
        ),
        max_size=10,
    ).map(b"".join)
)
def test_imap_reader_frames_or_raises_imap_error(
    loop: asyncio.AbstractEventLoop, data: bytes
) -> None:
    lines = _run(loop, _read_all(data))

    assert all(len(literal) <= 64 for line in lines for literal in line.literals)


# --- MIME ----------------------------------------------------------------------

_HEADER_NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
                 "References", "Content-Type", "Content-Transfer-Encoding",
                 "Content-Disposition", "MIME-Version", "Reply-To"]  # fmt: skip
_HEADER_VALUES = [
    "a@b.example", '"Müller, J." <j@x.example>', "((((((((((nested))))))))) <a@b>", "<>", "@",
    'multipart/mixed; boundary="b"', "multipart/alternative; boundary=",
    "text/plain; charset=x-bad",
    "text/html; charset=utf-8", "message/rfc822", "base64", "quoted-printable", "x-uuencode",
    "attachment; filename*=utf-8''%FF%FE.pdf", "=?utf-8?b?////?=", "=?x?q?=ZZ?=",
    "Tue, 31 Feb 2026 25:61:00 +9999", "<id@x> <id2@x", "",
]  # fmt: skip


@st.composite
def mails(draw: st.DrawFn) -> bytes:
    """Mail-shaped bytes: headers from a list of troublemakers, bodies with boundaries."""
    headers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(_HEADER_NAMES),
                st.one_of(st.sampled_from(_HEADER_VALUES), st.text(max_size=30)),
            ),
            max_size=10,
        )
    )
    body = draw(
        st.lists(
            st.one_of(
                st.sampled_from([b"--b", b"--b--", b"", b"Content-Type: text/plain", b"=\xff"]),
                st.binary(max_size=40),
                st.text(max_size=40).map(str.encode),
            ),
            max_size=12,
        )
    )
    head = b"".join(
        f"{name}: {value}\r\n".encode("utf-8", "surrogatepass") for name, value in headers
    )
    return head + b"\r\n" + b"\r\n".join(body)


@fuzz
@given(st.one_of(mails(), st.binary(max_size=300)))
def test_parse_message_never_raises(raw: bytes) -> None:
    item = parse_message(raw, max_attachment_bytes=50)

    assert isinstance(item, MailItem)
    assert item.content_hash
    assert all(len(a.content) <= 50 for a in item.attachments)


# --- contacts import -------------------------------------------------------------

_TITLES = ["Name", "Vorname", "Last Name", "Company", "E-Mail", "Phone", "Telefon privat",
           "Phone 1 - Type", "Phone 1 - Value", "Notes", ""]  # fmt: skip


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV file with known and unknown columns and any cells, in some encoding."""
    titles = draw(st.lists(st.sampled_from(_TITLES), min_size=1, max_size=6))
    cells = st.one_of(
        st.text(max_size=20), st.sampled_from(["+49 30 1234567", "a@b.example", "x@"])
    )
    rows = draw(st.lists(st.lists(cells, max_size=len(titles) + 1), max_size=6))
    out = io.StringIO()
    csv.writer(out, delimiter=draw(st.sampled_from([",", ";", "\t"]))).writerows([titles, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]))
    return out.getvalue().encode(encoding, "replace")


@fuzz
@given(st.one_of(csv_files(), st.binary(max_size=200)), st.sampled_from(["a.csv", "a.xlsx"]))
def test_import_rows_are_read_and_prepared_without_raising(data: bytes, filename: str) -> None:
    try:
        rows = read_rows(data, filename)
    except InvalidInput as exc:
        assert exc.args
        return
    for raw in rows:
        assert isinstance(raw, RawRow)
        prepared = prepare_row(raw, "DE")
        assert prepared.row == raw.row
