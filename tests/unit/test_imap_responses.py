"""The IMAP response parsers against garbage: a value or an ImapError, never anything else.

The table holds the lines a fuzzer found escaping as ``ValueError``,
``UnicodeDecodeError``, ``IndexError``, ``OverflowError``... before the parsers
translated them, and their neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crmcomms.mail.imap_responses import (
    FolderInfo,
    ImapCommandError,
    ImapError,
    ImapProtocolError,
    Line,
    literal_size,
    parse_bodies,
    parse_capabilities,
    parse_examine,
    parse_folders,
    parse_uid_sizes,
)

GARBAGE = [
    b"* EXISTS",
    b" EXISTS",
    b"* x EXISTS",
    b"* -1 EXISTS",
    b"* \xff EXISTS",
    b"* " + b"9" * 5000 + b" EXISTS",
    b"* 99999999999 EXISTS",
    b"* OK [UIDVALIDITY]",
    b"* OK [UIDVALIDITY ]",
    b"* OK [UIDVALIDITY abc]",
    b"* OK [UIDVALIDITY 1 2]",
    b"* OK [UIDVALIDITY " + b"7" * 5000 + b"]",
    b"* OK [UIDVALIDITY 4294967296]",
    b"* OK [UIDNEXT \xff]",
    b"* CAPABILITY IMAP4rev1 \xff\xfe IDLE",
    b'* LIST (\\HasNoChildren \xff) "/" "INBOX"',
    b'* LIST () "/" "\xc3\x28"',
    b'* LIST () "/" ',
    b"* LIST (",
    b"* 1 FETCH (UID 99999999999999999999 RFC822.SIZE 5)",
    b"* 1 FETCH (UID 7 RFC822.SIZE " + b"1" * 5000 + b")",
    b"* 1 FETCH (UID  RFC822.SIZE 5)",
    b"* 1 FETCH (UID x)",
    b"*",
    b"",
    b"\x00\x00\x00",
    b"* 1 FETCH (UID 5 BODY[] ",
]

PARSERS: list[tuple[str, Callable[[list[Line]], Any]]] = [
    ("examine", lambda lines: parse_examine("INBOX", lines)),
    ("capabilities", parse_capabilities),
    ("folders", parse_folders),
    ("uid_sizes", lambda lines: parse_uid_sizes(lines, 0)),
    ("bodies", lambda lines: parse_bodies(lines, {5, 7})),
]


@pytest.mark.parametrize("text", GARBAGE)
@pytest.mark.parametrize(("name", "parse"), PARSERS, ids=[name for name, _ in PARSERS])
def test_garbage_gives_a_value_or_an_imap_error(
    name: str, parse: Callable[[list[Line]], Any], text: bytes
) -> None:
    good = [Line(b"* 3 EXISTS"), Line(b"* OK [UIDVALIDITY 17] UIDs valid")]
    for lines in ([Line(text)], [*good, Line(text)], [Line(text, (b"\xff\xfe",))]):
        try:
            parse(lines)
        except ImapError:
            pass


@pytest.mark.parametrize(
    "text",
    [
        b"* EXISTS",
        b"* x EXISTS",
        b"* 99999999999 EXISTS",
        b"* OK [UIDVALIDITY ]",
        b"* OK [UIDVALIDITY abc]",
        b"* OK [UIDVALIDITY 4294967296]",
        b"* OK [UIDVALIDITY " + b"7" * 5000 + b"]",
    ],
)
def test_a_garbled_examine_answer_is_a_protocol_error_naming_the_field(text: bytes) -> None:
    lines = [Line(b"* OK [UIDVALIDITY 17] UIDs valid"), Line(text)]
    with pytest.raises(ImapProtocolError, match=r"EXISTS|UIDVALIDITY") as raised:
        parse_examine("INBOX", lines)
    assert isinstance(raised.value, ImapError)


def test_a_well_formed_examine_answer_still_reads() -> None:
    lines = [
        Line(b"* FLAGS (\\Answered \\Seen)"),
        Line(b"* 12 EXISTS"),
        Line(b"* 0 RECENT"),
        Line(b"* OK [UIDVALIDITY 1700000000] UIDs valid"),
        Line(b"* OK [UIDNEXT 13] Predicted next UID"),
    ]
    assert parse_examine("INBOX", lines) == FolderInfo("INBOX", 1700000000, 12, 13)
    with pytest.raises(ImapCommandError, match="no UIDVALIDITY"):
        parse_examine("INBOX", lines[:3])


def test_odd_bytes_in_capability_and_list_do_not_stop_the_rest() -> None:
    caps = parse_capabilities([Line(b"* CAPABILITY IMAP4rev1 \xff IDLE")])
    assert {"IMAP4REV1", "IDLE"} <= caps
    folders = parse_folders(
        [
            Line(b'* LIST (\\HasNoChildren) "/" "INBOX"'),
            Line(b'* LIST () "/" "\xc3\x28"'),  # not UTF-8: cannot be named back, left out
            Line(b'* LIST (\\Sent \xff) "/" {4}', (b"Sent",)),
        ]
    )
    assert [folder.name for folder in folders] == ["INBOX", "Sent"]
    assert "\\sent" in folders[1].flags and folders[1].delimiter == "/"


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"* 1 FETCH (UID 5 BODY[] {12}\r\n", 12),
        (b"* 1 FETCH (UID 5 BODY[] {12+}\r\n", 12),
        (b"* 1 FETCH (UID 5 FLAGS ())\r\n", None),
    ],
)
def test_literal_size_reads_the_announced_size(line: bytes, size: int | None) -> None:
    assert literal_size(line, 100) == size


@pytest.mark.parametrize(
    "line",
    [
        b"* 1 FETCH (UID 5 BODY[] {101}\r\n",
        b"* 1 FETCH (UID 5 BODY[] {99999999999999999999999}\r\n",
        b"* 1 FETCH (UID 5 BODY[] {" + b"9" * 5000 + b"}\r\n",
    ],
)
def test_a_literal_over_the_maximum_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ImapProtocolError, match="literal"):
        literal_size(line, 100)
