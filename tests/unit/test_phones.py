"""Phone number normalisation over a table of the formats met in address books and caller IDs."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.phones import (
    NormalisedNumber,
    format_for_dialling,
    format_for_display,
    national_digits,
    normalise,
    rev_digits,
    suffix_key,
)

BERLIN = "+49301234567"

# raw, region, expected e164, expected kind, expected extension
NUMBERS: list[tuple[str, str, str | None, str, str | None]] = [
    # German national and international spellings of one Berlin number
    ("+49 30 1234567", "DE", BERLIN, "e164", None),
    ("+49301234567", "DE", BERLIN, "e164", None),
    ("0049301234567", "DE", BERLIN, "e164", None),
    ("0049 30 1234567", "DE", BERLIN, "e164", None),
    ("030 1234567", "DE", BERLIN, "e164", None),
    ("0301234567", "DE", BERLIN, "e164", None),
    ("(030) 123-4567", "DE", BERLIN, "e164", None),
    ("030/1234567", "DE", BERLIN, "e164", None),
    ("030-1234567", "DE", BERLIN, "e164", None),
    ("+49.30.1234567", "DE", BERLIN, "e164", None),
    ("+49 (0)30 1234567", "DE", BERLIN, "e164", None),
    ("+49 (0) 30 1234567", "DE", BERLIN, "e164", None),
    ("0049 (0)30 1234567", "DE", BERLIN, "e164", None),
    ("tel:+49-30-1234567", "DE", BERLIN, "e164", None),
    ("  030 1234567  ", "DE", BERLIN, "e164", None),
    ("49301234567", "DE", BERLIN, "e164", None),  # trunk without + or 00
    # extensions are kept apart; a hyphenated tail is a direct-dial number (DIN 5008)
    ("030 1234567 ext. 12", "DE", BERLIN, "e164", "12"),
    ("030 1234567 ext.12", "DE", BERLIN, "e164", "12"),
    ("030 1234567 x12", "DE", BERLIN, "e164", "12"),
    ("+49 30 1234567 #12", "DE", BERLIN, "e164", "12"),
    ("030 1234567 Durchwahl 12", "DE", BERLIN, "e164", "12"),
    ("+49301234567;ext=12", "DE", BERLIN, "e164", "12"),
    ("030 1234567-12", "DE", "+4930123456712", "e164", None),
    # German mobiles and other area codes
    ("0171 1234567", "DE", "+491711234567", "e164", None),
    ("+49 (0) 171 1234567", "DE", "+491711234567", "e164", None),
    ("0151 23456789", "DE", "+4915123456789", "e164", None),
    ("089 12345678", "DE", "+498912345678", "e164", None),
    ("0221 9876543", "DE", "+492219876543", "e164", None),
    ("06131 123456", "DE", "+496131123456", "e164", None),
    # letters (vanity numbers)
    ("0800 FLOWERS", "DE", "+498003569377", "e164", None),
    ("+1 800 FLOWERS", "DE", "+18003569377", "e164", None),
    # foreign numbers, seen from Germany and from home
    ("+44 20 7946 0958", "DE", "+442079460958", "e164", None),
    ("0044 20 7946 0958", "DE", "+442079460958", "e164", None),
    ("+44 (0) 20 7946 0958", "DE", "+442079460958", "e164", None),
    ("020 7946 0958", "GB", "+442079460958", "e164", None),
    ("+33 1 42 68 53 00", "DE", "+33142685300", "e164", None),
    ("01 42 68 53 00", "FR", "+33142685300", "e164", None),
    ("+1 (212) 555-0100", "DE", "+12125550100", "e164", None),
    ("(212) 555-0100", "US", "+12125550100", "e164", None),
    ("011 44 20 7946 0958", "US", "+442079460958", "e164", None),
    ("+43 1 5344 0", "DE", "+43153440", "e164", None),
    ("+41 44 668 18 00", "DE", "+41446681800", "e164", None),
    ("+39 06 1234 5678", "DE", "+390612345678", "e164", None),
    # internal short extensions
    ("101", "DE", None, "short", None),
    ("2001", "DE", None, "short", None),
    ("123456", "DE", None, "short", None),
    # digits that are no valid number stay raw
    ("1234567", "DE", None, "raw", None),
    ("030 12", "DE", None, "raw", None),
    ("011 44 20 7946 0958", "DE", None, "raw", None),  # 011 is not Germany's exit code
    ("12345678901234567890", "DE", None, "raw", None),
    ("*31#101", "DE", None, "raw", None),
]

NOT_NUMBERS = [
    "",
    "   ",
    "anonymous",
    "Anonymous",
    "ANONYMOUS",
    "unknown",
    "<unknown>",
    "restricted",
    "private",
    "unavailable",
    "Anna Schmidt",
]


@pytest.mark.parametrize(("raw", "region", "e164", "kind", "extension"), NUMBERS)
def test_normalise(
    raw: str, region: str, e164: str | None, kind: str, extension: str | None
) -> None:
    number = normalise(raw, region)
    assert number is not None
    assert (number.e164, number.kind, number.extension) == (e164, kind, extension)
    assert number.raw == raw.strip()
    assert number.digits.isdigit()
    if e164 is not None:
        assert number.digits == e164[1:]


@pytest.mark.parametrize("raw", NOT_NUMBERS)
def test_withheld_and_empty_are_no_number(raw: str) -> None:
    assert normalise(raw, "DE") is None


def test_table_is_large_enough() -> None:
    assert len(NUMBERS) + len(NOT_NUMBERS) >= 40


def test_short_and_raw_keep_their_digits() -> None:
    assert normalise("10 1", "DE") == NormalisedNumber("10 1", None, "101", None, "short")
    raw = normalise("030 12", "DE")
    assert raw is not None and raw.digits == "03012"


def test_rev_digits_and_suffix_key() -> None:
    number = normalise("030 1234567", "DE")
    assert number is not None
    assert rev_digits(number) == "76543210394"
    assert suffix_key(number.digits, 7) == "7654321"
    assert rev_digits(number).startswith(suffix_key(number.digits, 7))


def test_suffix_key_needs_enough_digits() -> None:
    with pytest.raises(ValueError):
        suffix_key("101", 7)
    with pytest.raises(ValueError):
        suffix_key("4930", 0)


@pytest.mark.parametrize(
    ("number", "region", "expected"),
    [
        ("+49301234567", "DE", "0301234567"),
        ("030 1234567", "DE", "0301234567"),
        ("+491711234567", "DE", "01711234567"),
        ("+442079460958", "DE", "00442079460958"),
        ("+12125550100", "DE", "0012125550100"),
        ("+49301234567", "AT", "0049301234567"),
        ("+390612345678", "IT", "0612345678"),  # Italy has no trunk prefix
        ("+12125550100", "US", "12125550100"),  # US trunk prefix is 1
        ("101", "DE", "101"),
        ("+49301234567;ext=12", "DE", "0301234567"),
    ],
)
def test_format_for_dialling(number: str, region: str, expected: str) -> None:
    assert format_for_dialling(number, region) == expected


def test_format_for_dialling_with_pbx_prefixes() -> None:
    assert format_for_dialling("+442079460958", "US", international_prefix="011") == (
        "011442079460958"
    )
    assert format_for_dialling("+49301234567", "DE", national_prefix="0") == "0301234567"


def test_format_for_dialling_rejects_withheld() -> None:
    with pytest.raises(InvalidInput) as info:
        format_for_dialling("anonymous", "DE")
    assert info.value.field == "number"


@pytest.mark.parametrize(
    ("number", "region", "expected"),
    [
        ("+49301234567", "DE", "030 1234567"),
        ("+442079460958", "DE", "+44 20 7946 0958"),
        ("+49301234567;ext=12", "DE", "030 1234567 ext. 12"),
        ("101", "DE", "101"),
        ("anonymous", "DE", "anonymous"),
    ],
)
def test_format_for_display(number: str, region: str, expected: str) -> None:
    assert format_for_display(number, region) == expected


def test_national_digits() -> None:
    berlin = normalise("+49 30 1234567", "DE")
    short = normalise("101", "DE")
    assert berlin is not None and short is not None
    assert national_digits(berlin) == "301234567"
    assert national_digits(short) == "101"
