"""Composing outgoing mail: the mailbox's display name on From, Bcc kept in our copy
and out of what goes over SMTP; the timeline's preview of a message's new text."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from core.mail.outbox import Draft, compose, split_bcc
from core.mail.preview import preview

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_from_carries_the_mailbox_display_name() -> None:
    draft = Draft(
        "support", "support@company.test", ("ann@example.com",), sender_name="Müller Bau Support"
    )
    mime = message_from_bytes(compose(draft, None, NOW), policy=policy.default)
    assert mime["From"].addresses[0].display_name == "Müller Bau Support"
    assert mime["From"].addresses[0].addr_spec == "support@company.test"
    assert mime["Message-ID"].endswith("@company.test>")


def test_bcc_is_in_our_copy_and_only_in_the_envelope() -> None:
    draft = Draft(
        "support",
        "support@company.test",
        ("ann@example.com",),
        cc=("bob@example.com",),
        bcc=("boss@company.test", "archive@company.test"),
        subject="Angebot",
        text="Hallo",
    )
    raw = compose(draft, None, NOW)
    assert b"\r\nBcc: boss@company.test, archive@company.test\r\n" in raw
    wire, bcc = split_bcc(raw)
    assert bcc == ("boss@company.test", "archive@company.test")
    assert b"boss@company.test" not in wire and b"Bcc" not in wire
    assert wire == raw.replace(b"Bcc: boss@company.test, archive@company.test\r\n", b"")
    assert message_from_bytes(wire, policy=policy.default)["Cc"] == "bob@example.com"


def test_a_folded_bcc_field_goes_whole() -> None:
    raw = b"From: a@x.test\r\nBCC: one@x.test,\r\n two@x.test\r\nSubject: s\r\n\r\nBcc: body\r\n"
    wire, bcc = split_bcc(raw)
    assert bcc == ("one@x.test", "two@x.test")
    assert wire == b"From: a@x.test\r\nSubject: s\r\n\r\nBcc: body\r\n"


def test_without_bcc_the_bytes_are_untouched() -> None:
    raw = b"From: a@x.test\r\nSubject: s\r\n\r\nbody\r\n"
    assert split_bcc(raw) == (raw, ())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Hello Ms Hansen,\n\nthank you for your order.\n"
            "The pallets leave on Friday.\n\n-- \nSupport",
            "Hello Ms Hansen, thank you for your order. The pallets leave on Friday.",
        ),
        (
            "Yes, Friday suits us.\n\nOn Mon, 1 Dec 2026 at 10:00, Support <s@x.test> wrote:\n"
            "> Shall we deliver on Friday?\n> Regards",
            "Yes, Friday suits us.",
        ),
        (
            "Bitte prüfen.\n\nAm 01.12.2026 um 10:00 schrieb Anna Berg:\n> Angebot anbei",
            "Bitte prüfen.",
        ),
        ("See below.\n\n-----Original Message-----\nFrom: x\nOld text", "See below."),
        (None, ""),
        ("> only a quote", ""),
    ],
)
def test_preview_is_the_new_text_on_one_line(text: str | None, expected: str) -> None:
    assert preview(text) == expected


def test_preview_is_cut_with_an_ellipsis() -> None:
    cut = preview("word " * 100, limit=20)
    assert len(cut) <= 20 and cut.endswith("…")
