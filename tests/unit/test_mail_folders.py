"""Folder names on every standard hierarchy, from what LIST and NAMESPACE answer."""

from __future__ import annotations

import pytest

from crmcomms.mail.folders import find_sent, mirrored_folders, sent_folder_of
from crmcomms.mail.imap_responses import (
    Line,
    ListedFolder,
    Namespace,
    parse_folders,
    parse_namespace,
    status_folder,
)

DOVECOT = [
    Line(b'* LIST (\\HasNoChildren \\Sent) "/" Sent'),
    Line(b'* LIST (\\HasNoChildren) "/" Archive'),
    Line(b'* LIST (\\HasNoChildren) "/" INBOX'),
]
CYRUS = [  # Debian's Cyrus, no SPECIAL-USE on the folders, "." hierarchy below INBOX
    Line(b'* LIST (\\HasChildren) "." INBOX'),
    Line(b'* LIST (\\HasNoChildren) "." INBOX.Sent'),
    Line(b'* LIST (\\HasNoChildren) "." INBOX.Archive'),
]
GMAIL = [
    Line(b'* LIST (\\HasNoChildren) "/" "INBOX"'),
    Line(b'* LIST (\\HasChildren \\Noselect) "/" "[Gmail]"'),
    Line(b'* LIST (\\HasNoChildren \\All) "/" "[Gmail]/All Mail"'),
    Line(b'* LIST (\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"'),
]
EXCHANGE_DE = [  # no SPECIAL-USE, localised
    Line(b'* LIST (\\HasNoChildren) "/" INBOX'),
    Line(b'* LIST (\\HasNoChildren) "/" "Gesendete Elemente"'),
]
NO_SENT_YET = [Line(b'* LIST (\\HasNoChildren) "." INBOX')]


def namespace(raw: bytes) -> Namespace:
    return parse_namespace([Line(raw)])


ROOT = namespace(b'* NAMESPACE (("" "/")) NIL NIL')
INBOX_DOT = namespace(b'* NAMESPACE (("INBOX." ".")) NIL (("" "."))')


def test_namespace_is_read() -> None:
    assert ROOT == Namespace("", "/")
    assert INBOX_DOT == Namespace("INBOX.", ".")
    assert namespace(b"* NAMESPACE NIL NIL NIL") == Namespace()


@pytest.mark.parametrize(
    ("lines", "space", "sent"),
    [
        (DOVECOT, ROOT, "Sent"),
        (CYRUS, INBOX_DOT, "INBOX.Sent"),
        (CYRUS, Namespace(), "INBOX.Sent"),  # no NAMESPACE: found below INBOX all the same
        (GMAIL, ROOT, "[Gmail]/Sent Mail"),
        (EXCHANGE_DE, ROOT, "Gesendete Elemente"),
        (NO_SENT_YET, INBOX_DOT, None),
    ],
)
def test_the_sent_folder_is_found_on_every_hierarchy(
    lines: list[Line], space: Namespace, sent: str | None
) -> None:
    assert find_sent(parse_folders(lines), space) == sent


def test_sent_copies_go_to_sent_in_the_personal_namespace_when_there_is_none() -> None:
    assert sent_folder_of(parse_folders(NO_SENT_YET), INBOX_DOT) == "INBOX.Sent"
    assert sent_folder_of([ListedFolder("INBOX", frozenset(), "/")], ROOT) == "Sent"


def test_configured_names_are_spelled_as_the_server_does() -> None:
    listed = parse_folders(CYRUS)
    assert mirrored_folders((), listed, INBOX_DOT) == ["INBOX", "INBOX.Sent"]
    assert mirrored_folders(("inbox", "Archive", "Gone"), listed, INBOX_DOT) == [
        "INBOX",
        "INBOX.Archive",
        "Gone",  # unknown: kept, check-config and the sync name it
    ]
    assert mirrored_folders((), parse_folders(GMAIL), ROOT) == ["INBOX", "[Gmail]/Sent Mail"]


def test_notify_status_lines_name_their_folder() -> None:
    assert status_folder(Line(b"* STATUS Sent (MESSAGES 2 UIDNEXT 3)")) == "Sent"
    assert status_folder(Line(b'* STATUS "Sent Items" (UIDNEXT 3)')) == "Sent Items"
    assert status_folder(Line(b"* STATUS  (UIDNEXT 3)", (b"INBOX.Sent",))) == "INBOX.Sent"
    assert status_folder(Line(b"* 3 EXISTS")) is None
