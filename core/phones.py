"""Phone number normalisation, sans I/O (on top of ``phonenumbers``).

Every number a contact has, and every number the PBX presents, goes through
:func:`normalise` so that both sides of a lookup agree:

- a number ``phonenumbers`` considers *valid* for ``region`` becomes E.164
  (kind ``e164``); the extension (``ext. 12``, ``x12``, ``#12``, ``Durchwahl 12``)
  is kept apart and is not part of the matching digits;
- a string of at most :data:`SHORT_MAX_DIGITS` digits not starting with ``0``
  is an internal extension (kind ``short``, no E.164), e.g. ``101``;
- anything else with digits is kept as its digits (kind ``raw``);
- withheld caller IDs (``anonymous``, ``<unknown>``, ``restricted``...) and
  strings without digits give ``None``.

A hyphen is punctuation, not an extension marker: in German notation
(DIN 5008) ``030 1234567-12`` is the direct-dial number ``+4930123456712``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat

from core.errors import InvalidInput

PhoneKind = Literal["e164", "short", "raw"]

#: Longest digit string taken for an internal extension rather than a phone number.
SHORT_MAX_DIGITS = 6

_WITHHELD = frozenset(
    {
        "anonymous",
        "anonym",
        "unknown",
        "unbekannt",
        "restricted",
        "private",
        "privat",
        "unavailable",
        "withheld",
        "blocked",
    }
)
_SHORT = re.compile(r"[\d\s]{1,12}")
_GERMAN_EXTENSION = re.compile(r"\s*(?:durchwahl|dw\.?)\s*(\d+)\s*$", re.IGNORECASE)
_NON_DIGITS = re.compile(r"\D")


@dataclass(frozen=True, slots=True)
class NormalisedNumber:
    """A phone number as entered (``raw``) and in the forms used for matching.

    ``digits`` are the digits a suffix match compares: the E.164 digits without
    ``+`` for kind ``e164``, otherwise the digits of ``raw``.
    """

    raw: str
    e164: str | None
    digits: str
    extension: str | None
    kind: PhoneKind


@functools.lru_cache(maxsize=4096)
def normalise(raw: str, region: str) -> NormalisedNumber | None:
    """Normalise ``raw`` (as typed or as presented by the PBX); None if it is no number.

    Cached: parsing costs ~30 us and callers call again (a screen pop looks the
    caller up, the call log stores the number in E.164, and the same customers
    call again and again)."""
    text = raw.strip()
    if not text or _is_withheld(text) or not any(c.isdigit() for c in text):
        return None
    if _SHORT.fullmatch(text):
        digits = _NON_DIGITS.sub("", text)
        if len(digits) <= SHORT_MAX_DIGITS and not digits.startswith("0"):
            return NormalisedNumber(text, None, digits, None, "short")
    parsed = _parse(_GERMAN_EXTENSION.sub(r" ext. \1", text), region)
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
        return NormalisedNumber(text, e164, e164[1:], parsed.extension or None, "e164")
    return NormalisedNumber(text, None, _NON_DIGITS.sub("", text), None, "raw")


def rev_digits(number: NormalisedNumber) -> str:
    """The matching digits reversed, as stored in ``PhoneNumber.rev_digits``."""
    return number.digits[::-1]


def suffix_key(digits: str, n: int) -> str:
    """The last ``n`` digits reversed: the prefix of ``rev_digits`` a suffix match scans for."""
    if n <= 0 or len(digits) < n:
        raise ValueError(f"need at least {n} digits, got {len(digits)}")
    return digits[-n:][::-1]


def format_for_dialling(
    raw_or_e164: str,
    region: str,
    international_prefix: str = "00",
    national_prefix: str | None = None,
) -> str:
    """The digits a PBX in ``region`` dials to reach the number.

    Same country: national prefix + national number (``0301234567``); other
    country: international prefix + E.164 digits (``00442079460958``); short
    extensions and unparseable numbers: their digits. ``national_prefix``
    defaults to the region's own trunk prefix (``0`` in DE, none in IT).
    """
    number = normalise(raw_or_e164, region)
    if number is None:
        raise InvalidInput("number", f"{raw_or_e164!r} is not a number that can be dialled")
    if number.e164 is None:
        return number.digits
    parsed = phonenumbers.parse(number.e164)
    if parsed.country_code != phonenumbers.country_code_for_region(region):
        return international_prefix + number.digits
    if national_prefix is None:
        national_prefix = trunk_prefix(region)
    return national_prefix + phonenumbers.national_significant_number(parsed)


def format_for_display(e164: str, region: str) -> str:
    """Human-friendly form: national format at home, international abroad."""
    number = normalise(e164, region)
    if number is None or number.e164 is None:
        return e164.strip()
    parsed = phonenumbers.parse(number.e164)
    parsed.extension = number.extension
    same_country = parsed.country_code == phonenumbers.country_code_for_region(region)
    style = PhoneNumberFormat.NATIONAL if same_country else PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(parsed, style)


@functools.lru_cache(maxsize=8192)
def display_number(raw: str, region: str) -> str:
    """``raw`` as the page shows it (:func:`format_for_display`); "" for nothing."""
    return format_for_display(raw, region) if raw and raw.strip() else ""


def _is_withheld(text: str) -> bool:
    return text.strip("<>[]() ").lower() in _WITHHELD


def _parse(text: str, region: str) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def trunk_prefix(region: str) -> str:
    """The national (trunk) prefix of ``region``: ``0`` in DE, none in IT."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if metadata is None or metadata.national_prefix is None:
        return ""
    return str(metadata.national_prefix)


def national_digits(number: NormalisedNumber) -> str:
    """The national significant number of an E.164 number, else the number's digits."""
    if number.e164 is None:
        return number.digits
    return phonenumbers.national_significant_number(phonenumbers.parse(number.e164))
