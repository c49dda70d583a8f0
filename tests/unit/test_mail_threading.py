"""Threading decisions, table-driven: references first, then subject + people + time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.mail import (
    ThreadCandidate,
    ThreadDecision,
    ThreadInput,
    ThreadPolicy,
    ThreadReason,
    assign_thread,
    lookup_ids,
    normalise_subject,
    parse_message,
    strip_subject_prefixes,
    subject_key,
)

MAIL = Path(__file__).parent.parent / "fixtures" / "mail"
T0 = datetime(2023, 6, 1, 12, 0, tzinfo=UTC)
POLICY = ThreadPolicy(internal_domains=frozenset({"example.com"}))
CUSTOMER = frozenset({"anna@customer.de", "support@example.com"})
OTHER_CUSTOMER = frozenset({"bob@other.org", "support@example.com"})


def msg(
    message_id: str | None = "new@x",
    *,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    subject: str | None = "Offer",
    people: frozenset[str] = CUSTOMER,
    days: float | None = 1,
) -> ThreadInput:
    date = None if days is None else T0 + timedelta(days=days)
    return ThreadInput(message_id, in_reply_to, references, subject, people, date, "hash-1")


def thread(
    thread_id: str, subject: str = "offer", people: frozenset[str] = CUSTOMER
) -> ThreadCandidate:
    return ThreadCandidate(thread_id, subject, people, T0 - timedelta(days=3), T0)


@pytest.mark.parametrize(
    ("case", "message", "known", "expected"),
    [
        (
            "reply by In-Reply-To",
            msg(in_reply_to="root@x"),
            {"root@x": "T1"},
            ThreadDecision("T1", ThreadReason.REFERENCE, "root@x"),
        ),
        (
            "nearest known reference wins",
            msg(references=("root@x", "mid@x", "lost@x")),
            {"root@x": "T1", "mid@x": "T2"},
            ThreadDecision("T2", ThreadReason.REFERENCE, "mid@x"),
        ),
        (
            "In-Reply-To before References",
            msg(in_reply_to="b@x", references=("a@x",)),
            {"a@x": "T1", "b@x": "T2"},
            ThreadDecision("T2", ThreadReason.REFERENCE, "b@x"),
        ),
        (
            "own id already known: duplicate or parent after its reply",
            msg("root@x", references=("other@x",)),
            {"root@x": "T9", "other@x": "T1"},
            ThreadDecision("T9", ThreadReason.REFERENCE, "root@x"),
        ),
        (
            "broken references fall back to subject",
            msg(in_reply_to="gone@x", references=("gone@x", "lost@x")),
            {},
            ThreadDecision("T1", ThreadReason.SUBJECT, "T1"),
        ),
    ],
)
def test_reference_rules(
    case: str, message: ThreadInput, known: dict[str, str], expected: ThreadDecision
) -> None:
    assert assign_thread(message, known, [thread("T1")], POLICY) == expected, case


@pytest.mark.parametrize(
    ("case", "message", "candidates", "expected"),
    [
        ("German reply prefixes", msg(subject="AW: WG: Offer"), [thread("T1")], "T1"),
        ("same people", msg(), [thread("T1")], "T1"),
        (
            "same set of internal-only people",
            msg(people=frozenset({"a@example.com", "b@example.com"})),
            [thread("T1", people=frozenset({"a@example.com", "b@example.com"}))],
            "T1",
        ),
        (
            "one shared external address is enough",
            msg(people=frozenset({"anna@customer.de", "sales@example.com"})),
            [thread("T1")],
            "T1",
        ),
        ("only the company address in common", msg(people=OTHER_CUSTOMER), [thread("T1")], None),
        ("different subject", msg(subject="Re: Invoice"), [thread("T1")], None),
        ("no subject never matches", msg(subject="Re:"), [thread("T1", subject="")], None),
        ("29 days after the last message", msg(days=29), [thread("T1")], "T1"),
        ("31 days after the last message", msg(days=31), [thread("T1")], None),
        ("31 days before the first message", msg(days=-34), [thread("T1")], None),
        ("no date, no subject fallback", msg(days=None), [thread("T1")], None),
        (
            "nearest in time wins",
            msg(days=20),
            [
                ThreadCandidate("T-old", "offer", CUSTOMER, T0 - timedelta(days=9), T0),
                ThreadCandidate("T-new", "offer", CUSTOMER, T0, T0 + timedelta(days=15)),
            ],
            "T-new",
        ),
    ],
)
def test_subject_fallback(
    case: str, message: ThreadInput, candidates: list[ThreadCandidate], expected: str | None
) -> None:
    decision = assign_thread(message, {}, candidates, POLICY)
    if expected is None:
        assert decision == ThreadDecision("new@x", ThreadReason.NEW), case
    else:
        assert decision == ThreadDecision(expected, ThreadReason.SUBJECT, expected), case


def test_without_internal_domains_any_shared_address_links() -> None:
    decision = assign_thread(msg(people=OTHER_CUSTOMER), {}, [thread("T1")])
    assert decision.reason is ThreadReason.SUBJECT


def test_new_thread_without_message_id_uses_content_hash() -> None:
    decision = assign_thread(msg(None, subject="Fresh"), {}, [thread("T1")], POLICY)
    assert decision == ThreadDecision("hash-1", ThreadReason.NEW)


def test_lookup_ids_order_and_dedupe() -> None:
    message = msg("me@x", in_reply_to="p@x", references=("r@x", "m@x", "p@x"))
    assert lookup_ids(message) == ("me@x", "p@x", "m@x", "r@x")


def test_reply_chain_from_parsed_messages() -> None:
    """Store-as-you-go over parsed fixtures: the reply joins its root's thread."""
    known: dict[str, str] = {}
    decisions = []
    for name in ("16-duplicate-id-a", "11-alternative-reply"):
        item = parse_message((MAIL / f"{name}.eml").read_bytes())
        message = ThreadInput.of(item)
        decision = assign_thread(message, known, [], POLICY)
        for message_id in lookup_ids(message):  # what the store records per thread
            known.setdefault(message_id, decision.thread_id)
        decisions.append(decision)
    assert decisions[1] == ThreadDecision("reply-2@example.com", ThreadReason.NEW)
    parent_late = ThreadInput.of(parse_message(b"Message-ID: <reply-1@example.com>\n\nhi\n"))
    assert assign_thread(parent_late, known, [], POLICY) == ThreadDecision(
        "reply-2@example.com", ThreadReason.REFERENCE, "reply-1@example.com"
    )


def test_thread_input_of_collects_participants() -> None:
    item = parse_message((MAIL / "11-alternative-reply.eml").read_bytes())
    assert ThreadInput.of(item).participants == {
        "jane@example.com",
        "support@example.com",
        "boss@example.com",
    }
    assert subject_key(ThreadInput.of(item)) == "offer"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Offer", "Offer"),
        ("RE: AW: Offer", "Offer"),
        ("Aw: Wg: WG: Offer", "Offer"),
        ("Fwd: Fw: FW: Offer", "Offer"),
        ("SV: VS: Antw: TR: Offer", "Offer"),
        ("Re[2]: Re(3): Offer", "Offer"),
        ("RE : Offer", "Offer"),
        ("Re:Re:Offer", "Offer"),
        ("[crm-list] Re: [crm-list] Offer", "Offer"),
        ("  Re:   Offer  ", "Offer"),
        ("Reminder: Offer", "Reminder: Offer"),
        ("Offer: Re: details", "Offer: Re: details"),
        ("[URGENT]", "[URGENT]"),
        ("Re:", ""),
    ],
)
def test_strip_subject_prefixes(subject: str, expected: str) -> None:
    assert strip_subject_prefixes(subject) == expected


def test_list_tags_can_be_kept() -> None:
    assert strip_subject_prefixes("Re: [crm] Offer", strip_list_tags=False) == "[crm] Offer"
    assert normalise_subject("Re: [crm] Offer", strip_list_tags=False) == "[crm] offer"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("AW: Größe  \t Angebot", "grösse angebot"), (None, ""), ("", ""), ("Straße", "strasse")],
)
def test_normalise_subject(subject: str | None, expected: str) -> None:
    assert normalise_subject(subject) == expected
