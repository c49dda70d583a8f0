"""Search folding and number queries (core.search), how a contact matched (core.wrapup)."""

from __future__ import annotations

import pytest

from core.lookup import ContactCard, LookupResult
from core.phones import display_number, normalise
from core.search import fold, number_digits, search_key
from core.wrapup import link_kind


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Müller", "mueller"),
        ("MUELLER", "mueller"),
        ("Straße", "strasse"),
        ("  Jürgen   Öztürk ", "juergen oeztuerk"),
        ("Zoë Gaëlle", "zoe gaelle"),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_search_key_holds_both_spellings_of_umlauts() -> None:
    key = search_key(["Jürgen Müller", None, "Müller Bau GmbH", "VIP"])
    assert fold("müller") in key and "muller" in key and "vip" in key
    assert search_key(["Anna", "Berg"]) == "anna berg"


@pytest.mark.parametrize(
    ("q", "digits"),
    [
        ("0171 555", "171555"),  # national: without the trunk prefix
        ("+49 171", "49171"),  # international: from the country code
        ("0049 171", "49171"),
        ("030 1234567", "49301234567"),  # a whole valid number: its E.164 digits
        ("0049 (0)30 123-4567", "49301234567"),
        ("7946 0958", "79460958"),  # no prefix: the digits as typed
        ("101", "101"),
        ("12", None),  # too few digits
        ("müller", None),
    ],
)
def test_number_digits(q: str, digits: str | None) -> None:
    assert number_digits(q, "DE") == digits


def _result(kind: str, *ids: int) -> LookupResult:
    cards = tuple(ContactCard(i, f"c{i}", "", "", None, (), ()) for i in ids)
    return LookupResult(normalise("+498912345678", "DE"), cards, kind)  # type: ignore[arg-type]


def test_link_kind() -> None:
    assert link_kind(_result("exact", 1), 1) == "exact"
    assert link_kind(_result("exact", 1, 2), 2) == "several"
    assert link_kind(_result("suffix", 3), 3) == "suffix"
    assert link_kind(_result("exact", 1), 9) == "manual"
    assert link_kind(None, 9) == "manual"


def test_display_number_national_at_home_international_abroad() -> None:
    assert display_number("+498912345678", "DE") == "089 12345678"
    assert display_number("+442079460958", "DE") == "+44 20 7946 0958"
    assert display_number("+498912345678", "ZZ") == "+49 89 12345678"
    assert display_number("101", "DE") == "101"
    assert display_number("", "DE") == ""
