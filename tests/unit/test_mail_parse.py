"""MIME parsing over a corpus of awkward hand-written messages (tests/fixtures/mail)."""

from __future__ import annotations

import base64
import hashlib
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.mail import Address, MailItem, parse_headers, parse_message, sanitize_html
from core.mail.addresses import parse_addresses
from core.mail.dates import parse_date
from core.mail.decode import b64decode_lenient, decode_text
from core.mail.headers import strip_trailing_space
from core.mail.parse import joined_error, parse_body
from core.mail.words import decode_words

MAIL = Path(__file__).parent.parent / "fixtures" / "mail"
CORPUS = sorted(MAIL.glob("*.eml"))


def load(name: str) -> MailItem:
    return parse_message((MAIL / f"{name}.eml").read_bytes())


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_headers_only_parse_agrees_with_full_parse(path: Path) -> None:
    raw = path.read_bytes()
    headers, item = parse_headers(raw), parse_message(raw)
    for name in ("message_id", "in_reply_to", "references", "subject", "from_", "to", "cc"):
        assert getattr(headers, name) == getattr(item, name), name
    assert (headers.date, headers.content_hash) == (item.date, item.content_hash)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_two_phases_make_the_whole_parse(path: Path) -> None:
    """Phase 1 (headers) and phase 2 (body, headers not read again) give parse_message."""
    raw = path.read_bytes()
    headers, body, item = parse_headers(raw), parse_body(raw), parse_message(raw)
    if not headers.readable:  # no second phase: nothing to read a body by
        assert (item.text, item.html, item.parse_error) == (None, None, headers.parse_error)
        return
    assert (body.text, body.html, body.attachments) == (item.text, item.html, item.attachments)
    assert body.defects == item.defects
    assert joined_error(headers.parse_error, body.error) == item.parse_error


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_every_prefix_of_every_message_parses_without_raising(path: Path) -> None:
    raw = path.read_bytes()
    for end in range(0, len(raw), max(1, len(raw) // 40)):
        item = parse_message(raw[:end])
        assert isinstance(item.content_hash, str)


def test_plain_utf8_with_crlf_and_folded_encoded_subject() -> None:
    item = load("01-plain-utf8")
    assert item.message_id == "20230605080000.A1B2@mail.example.de"
    assert item.subject == "Anfrage: Größe zum Angebot"
    assert item.from_ == (Address("Jürgen Müller", "juergen.mueller@example.de"),)
    assert item.to == (
        Address("Support", "support@example.com"),
        Address("", "sales@example.com"),
    )
    assert item.date == utc(2023, 6, 5, 8, 0)
    assert item.text == (
        "Guten Tag,\n\nbitte schicken Sie mir das Angebot über 3 × 10 € zu.\n\nGrüße\nJürgen\n"
    )
    assert (item.html, item.attachments, item.parse_error, item.defects) == (None, (), None, ())


def test_latin1_quoted_printable_with_soft_line_break() -> None:
    item = load("02-latin1-qp")
    assert item.subject == "Grüße aus Köln"
    assert item.from_ == (Address("Renée Dupré", "renee@example.fr"),)
    assert item.text == (
        "Grüße aus Köln, schöne Grüße an Renée. Diese Zeile ist sehr lang und wurde weich "
        "umbrochen.\n"
    )


def test_windows_1252_body_after_mbox_from_line() -> None:
    item = load("03-cp1252-8bit-mbox")
    assert item.message_id == "cp1252@example.com"
    assert item.date == utc(2023, 6, 6, 15, 0)
    assert item.text == "The price is € 20 – “special” offer.\n"
    assert item.defects == ()


@pytest.mark.parametrize(
    ("name", "subject", "sender", "text"),
    [
        ("04-koi8r-base64", "Привет", Address("Иван Петров", "ivan@example.ru"), "Привет, мир!\n"),
        ("05-shift-jis", "お見積もり", Address("", "tanaka@example.jp"), "こんにちは、世界。①\n"),
        ("06-gb2312", "你好", Address("王先生", "wang@example.cn"), "你好，世界\n"),
    ],
)
def test_non_latin_charsets(name: str, subject: str, sender: Address, text: str) -> None:
    item = load(name)
    assert (item.subject, item.from_, item.text, item.defects) == (subject, (sender,), text, ())


def test_declared_latin1_that_is_utf8_is_read_as_utf8() -> None:
    item = load("07-declared-latin1-is-utf8")
    assert (item.subject, item.text) == ("Café", "Café naïve\n")
    assert item.defects == ("text/plain: charset iso-8859-1 did not fit",)


def test_declared_utf8_that_is_latin1_falls_back_to_cp1252() -> None:
    item = load("08-declared-utf8-is-latin1")
    assert (item.subject, item.text) == ("Café", "Café naïve\n")
    assert item.defects == ("text/plain: charset utf-8 did not fit",)


def test_no_mime_headers_with_raw_8bit_bytes() -> None:
    item = load("09-no-mime-8bit-headers")
    assert item.subject == "Bestellung für Müller"
    assert item.from_ == (Address("Zoë Müller", "zoe@example.de"),)
    assert item.to == (Address("Grün, Peter", "peter@example.de"),)  # latin-1 byte in header
    assert item.text == "Bitte liefern Sie fünf Stück.\n"


def test_broken_and_split_encoded_words() -> None:
    item = load("10-encoded-words-broken")
    assert item.message_id == "broken.words@example.com"
    assert item.subject == "👍 Great and café naïve =?utf-8?Q?broken"
    assert item.from_ == (Address("Müller, Hans", "hans.mueller@example.de"),)
    assert item.to == ()
    assert item.cc == (
        Address("Élodie", "elodie@example.fr"),
        Address("Jørn", "jorn@example.no"),
    )


def test_multipart_alternative_reply_keeps_text_html_and_references() -> None:
    item = load("11-alternative-reply")
    assert item.in_reply_to == "reply-1@example.com"
    assert item.references == ("root@example.com", "reply-1@example.com")
    assert item.reply_to == (Address("", "tickets@example.com"),)
    assert item.cc == (Address("Boss", "boss@example.com"),)
    assert (item.text, item.html) == ("Hello – plain", "<p>Hello – <b>html</b></p>")
    assert item.date == utc(2023, 6, 12, 13, 0)


def test_nested_related_with_inline_image_and_encoded_filenames() -> None:
    item = load("12-related-inline")
    assert item.text == "See the logo."
    assert item.html == '<p>See the logo <img src="cid:logo@example.com"></p>'
    logo, invoice, listing = item.attachments
    assert (logo.filename, logo.content_type, logo.inline) == ("logo.png", "image/png", True)
    assert logo.content_id == "logo@example.com"
    assert logo.content.startswith(b"\x89PNG") and logo.size == len(logo.content) == 70
    assert logo.sha256 == hashlib.sha256(logo.content).hexdigest()
    assert (invoice.filename, invoice.inline, invoice.content_id) == (
        "Rechnung März.pdf",
        False,
        None,
    )
    assert invoice.content == b"%PDF-1.4\n% fake pdf for tests\n%%EOF\n"
    assert (listing.filename, listing.content_type, listing.content) == (
        "Übersicht.txt",
        "text/plain",
        b"line one",
    )


def test_attached_message_is_kept_whole() -> None:
    item = load("13-rfc822-attached")
    assert item.text == "See below."
    (forwarded,) = item.attachments
    assert (forwarded.filename, forwarded.content_type) == ("Complaint.eml", "message/rfc822")
    inner = parse_message(forwarded.content)
    assert (inner.message_id, inner.subject) == ("inner@example.org", "Complaint")
    assert inner.text == "From here on I am unhappy."  # no ">From" mangling


def test_bad_base64_is_repaired_as_far_as_possible() -> None:
    item = load("14-bad-base64")
    assert item.text == "Hello world"
    (blob,) = item.attachments
    assert (blob.filename, blob.content) == ("data.bin", b"\x00\x01\x02\x03\x04\x05")
    assert item.defects == ("invalid base64 repaired",)


def test_no_message_id_and_no_date() -> None:
    item = load("15-no-message-id-no-date")
    assert (item.message_id, item.date, item.parse_error) == (None, None, None)
    assert item.from_ == (Address("Printer", "scanner@office.example.com"),)
    assert len(item.content_hash) == 64


def test_duplicate_message_id_still_differs_by_content_hash() -> None:
    first, second = load("16-duplicate-id-a"), load("16-duplicate-id-b")
    assert first.message_id == second.message_id == "same@example.com"
    assert first.content_hash != second.content_hash


def test_odd_date_two_digit_year_single_digits_and_named_zone() -> None:
    assert load("17-odd-date").date == utc(2023, 7, 4, 7, 5, 7)


def test_multipart_without_boundary_is_recovered_from_body() -> None:
    item = load("18-missing-boundary")
    assert item.text == "Recovered text."
    (csv,) = item.attachments
    assert (csv.filename, csv.content_type, csv.content) == ("list.csv", "text/csv", b"a,b")
    assert item.defects == ("multipart boundary missing or wrong: recovered from body",)


def test_nested_multipart_without_boundary_becomes_text() -> None:
    item = load("22-nested-no-boundary")
    assert item.text == "plain words only\n"
    assert item.defects == ("multipart without usable boundary: kept as text",)


def test_headers_only_message() -> None:
    item = load("19-headers-only")
    assert (item.subject, item.text, item.parse_error) == ("Headers only", "", None)
    assert item.date == utc(2023, 6, 18, 8, 0)


def test_garbage_bytes_give_parse_error_not_exception() -> None:
    item = load("20-garbage")
    assert item.parse_error == "no header fields found"
    assert (item.message_id, item.subject, item.text, item.from_) == (None, None, None, ())
    assert len(item.content_hash) == 64


@pytest.mark.parametrize("raw", [b"", b"\n\n", b"\xff\xfe\x00", b"Subject", b":::\n\n"])
def test_degenerate_input_never_raises(raw: bytes) -> None:
    item = parse_message(raw)
    assert item.parse_error == "no header fields found"


def test_html_with_script_is_kept_as_received_and_sanitised_on_demand() -> None:
    item = load("21-html-script")
    assert item.text is None
    assert item.html is not None and "<script>alert(1)</script>" in item.html
    safe = sanitize_html(item.html)
    for bad in ("<script", "alert", "onerror", "onload", "javascript:", "<iframe", "<form"):
        assert bad not in safe
    assert "<style" not in safe and "display:none" not in safe
    assert "position" not in safe and 'style="color:red"' in safe
    assert '<img src="data:image/png;base64,iVBORw0KGgo=">' in safe
    assert "data:text/html" not in safe
    assert (
        '<a href="https://example.net/pay" target="_blank" rel="noopener noreferrer">there</a>'
        in safe
    )


def test_sanitize_can_refuse_data_images() -> None:
    html = '<img src="data:image/png;base64,AAAA"><img src="data:image/svg+xml;base64,AAAA">'
    assert sanitize_html(html) == '<img src="data:image/png;base64,AAAA"><img>'
    assert sanitize_html(html, allow_data_images=False) == "<img><img>"


def test_huge_attachment_is_kept_as_metadata_only() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    raw = (
        b"Message-ID: <big@example.com>\nFrom: a@example.com\nSubject: big\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nsee\n'
        b'--b\nContent-Type: application/zip\nContent-Disposition: attachment; filename="big.zip"\n'
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(payload) + b"--b--\n"
    )
    item = parse_message(raw, max_attachment_bytes=2**20 - 1)
    (big,) = item.attachments
    assert (big.filename, big.size, big.content, big.truncated) == ("big.zip", 2**20, b"", True)
    assert big.sha256 == hashlib.sha256(payload).hexdigest()
    assert item.defects == ("attachment big.zip over size limit: metadata only",)
    assert parse_message(raw).attachments[0].content == payload


def test_same_message_fetched_twice_hashes_the_same() -> None:
    raw = (MAIL / "01-plain-utf8.eml").read_bytes()
    refetched = b"Delivered-To: other@example.com\nX-Spam-Score: 0.1\n" + raw.replace(
        b"\r\n", b"\n"
    )
    refetched = refetched.replace(b"Received: from", b"Received: from relay by x; 1 Jan\nX: from")
    assert parse_headers(refetched).content_hash == parse_headers(raw).content_hash
    edited = raw.replace("Jürgen\r\n".encode(), b"J.\r\n")
    assert parse_headers(edited).content_hash != parse_headers(raw).content_hash


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 05 Jun 2023 10:00:00 +0200", utc(2023, 6, 5, 8, 0)),
        ("Mon, 5 Jun 2023 10:00:00", utc(2023, 6, 5, 10, 0)),  # no zone: UTC
        ("5 Jun 23 10:00 EST", utc(2023, 6, 5, 15, 0)),
        ("Mon, 5 Jun 99 10:00:00 GMT", utc(1999, 6, 5, 10, 0)),
        ("Mon, 5 Jun 123 10:00:00 -0000", utc(2023, 6, 5, 10, 0)),
        ("Mon, 5 Jun 2023 10:00:00 MESZ", utc(2023, 6, 5, 8, 0)),
        ("Mon, 5 Jun 2023 10:00:00 +02:00", utc(2023, 6, 5, 8, 0)),
        ("Mon, 5 Jun 2023 10:00:00 +0200 (CEST)", utc(2023, 6, 5, 8, 0)),
        ("Mon, 5 Jun 2023 23:59:60 +0000", utc(2023, 6, 5, 23, 59, 59)),
        ("Monday, 5-Jun-2023 10:00:00 GMT", utc(2023, 6, 5, 10, 0)),
        ("2023-06-05T10:00:00+02:00", utc(2023, 6, 5, 8, 0)),
        ("2023-06-05 10:00:00", utc(2023, 6, 5, 10, 0)),
        ("garbage", None),
        ("Mon, 32 Jun 2023 10:00:00 +0000", None),
        ("Mon, 5 Jun 1066 10:00:00 +0000", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(value: str | None, expected: datetime | None) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?a_b?= =?utf-8?q?c?=", "a bc"),
        ("=?utf-8?b?w7w?=", "ü"),  # missing padding
        ("x=?utf-8?q?=C3=BC?=y", "xüy"),  # glued to text
        ("=?utf-8?q?hello world?=", "hello world"),  # raw space inside Q
        ("=?utf-8*de?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),  # RFC 2231 language
        ("=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", "éé"),
        ("=?bogus?q?=E9t=E9?=", "été"),
        ("=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
        ("plain", "plain"),
    ],
)
def test_decode_words(value: str, expected: str) -> None:
    assert decode_words(value) == expected


@pytest.mark.parametrize(
    ("data", "declared", "expected"),
    [
        (b"plain", None, ("plain", True)),
        ("ü".encode(), "utf-8", ("ü", True)),
        ("ü".encode(), None, ("ü", False)),
        ("ü".encode("latin-1"), "utf-8", ("ü", False)),
        (b"\x80", "us-ascii", ("€", True)),  # us-ascii read as windows-1252, like browsers
        ("ü".encode(), "iso-8859-1", ("ü", False)),
        ("Жж".encode("koi8-r"), "koi8-r", ("Жж", True)),
        (b"\x81", "utf-8", ("\x81", False)),  # only latin-1 takes it
        ("ü".encode(), "no-such-charset", ("ü", False)),
    ],
)
def test_decode_text(data: bytes, declared: str | None, expected: tuple[str, bool]) -> None:
    assert decode_text(data, declared) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"aGVsbG8=", (b"hello", True)),
        (b"aGVs\nbG8=\n", (b"hello", True)),
        (b"aGVsbG8", (b"hello", True)),  # missing padding is harmless
        (b"aGV*sbG8=", (b"hello", False)),
        (b"aGk=aGk=", (b"hihi", True)),
        (b"aGVsbG8=x", (b"hello", False)),
    ],
)
def test_b64decode_lenient(data: bytes, expected: tuple[bytes, bool]) -> None:
    assert b64decode_lenient(data) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@B.de", [("", "a@b.de")]),
        ("Jane   Doe <J@X.com>", [("Jane Doe", "j@x.com")]),
        ('"Doe, Jane" <j@x>, b@y,', [("Doe, Jane", "j@x"), ("", "b@y")]),
        (r'"A \"B\" C" <a@b>', [('A "B" C', "a@b")]),
        ("<a@b>", [("", "a@b")]),
        ("a@b (Alice)", [("Alice", "a@b")]),
        ("team: a@b, Carl <c@d>;", [("", "a@b"), ("Carl", "c@d")]),
        ("undisclosed-recipients:;", []),
        ("=?utf-8?q?J=C3=B6rg?= <j@x>", [("Jörg", "j@x")]),
        ("=?utf-8?q?Doe,_J=C3=B6rg?= <j@x>, k@y", [("Doe, Jörg", "j@x"), ("", "k@y")]),
        ("A@B, a@b", [("", "a@b")]),
        ("", []),
    ],
)
def test_parse_addresses(value: str, expected: list[tuple[str, str]]) -> None:
    assert parse_addresses([value]) == tuple(Address(n, a) for n, a in expected)


def test_deep_nesting_is_cut_off() -> None:
    levels = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(60)
    )
    item = parse_message(b"Message-ID: <deep@x>\n" + levels + b"Content-Type: text/plain\n\nx\n")
    assert (item.message_id, item.parse_error, item.text) == ("deep@x", None, None)
    assert item.defects == ("MIME nesting deeper than 40: rest ignored",)


_OLD_TRAILING_SPACE = re.compile(rb"[ \t\r]+(?=\n)|\s+\Z")


@pytest.mark.parametrize("seed", range(5))
def test_trailing_space_strip_matches_the_regex_it_replaced(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [b"a", b"\xfc", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x0b", b"\x0c", b"\x85", b"\xa0"]
    bodies = [path.read_bytes() for path in CORPUS]
    bodies += [b"".join(rng.choices(pieces, k=rng.randint(0, 40))) for _ in range(2000)]
    for body in bodies:
        assert strip_trailing_space(body) == _OLD_TRAILING_SPACE.sub(b"", body), body
