"""Indonesian mobile numbers as field officers type them, turned into one canonical form.

phonenumbers does the numbering-plan work (validity, type, formatting), but it is lenient in ways
that would let bad sheet cells through: it drops a leading letter (``o812…`` parses), misreads
``0062…`` and calls ``12345`` "possible". So the shape is checked here first and phonenumbers
is only asked about a number that already looks like ``+62 8…``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

# Separators people type inside a number: whitespace (incl. non-breaking), - . ( ) /
_SEPARATORS = re.compile(r"[\s\u00a0\u2007\u202f\-.()/]+")
_DIGITS = re.compile(r"\+?\d+")
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
MIN_NSN_DIGITS = 9
MAX_NSN_DIGITS = 12


class PhoneFormat(StrEnum):
    NATIONAL = "national"  # 081234567890
    E164 = "e164"  # +6281234567890


class InvalidPhone(ValueError):
    """The cell is not an Indonesian mobile number. The message never repeats the number."""


@dataclass(frozen=True, slots=True)
class Phone:
    national: str
    e164: str
    #: False when the number is well formed but in a range no operator has been assigned.
    assigned: bool

    def formatted(self, fmt: PhoneFormat) -> str:
        return self.e164 if fmt is PhoneFormat.E164 else self.national


def normalize_phone(raw: str) -> Phone:
    """Canonical form of an Indonesian mobile number, or :class:`InvalidPhone` saying why not."""
    return _normalize(_SEPARATORS.sub("", raw))


def same_number(a: str, b: str) -> bool:
    """Whether two cells hold the same number in any accepted spelling (``+6281…`` == ``081…``)."""
    try:
        return normalize_phone(a).e164 == normalize_phone(b).e164
    except InvalidPhone:
        return _SEPARATORS.sub("", a) == _SEPARATORS.sub("", b)


@lru_cache(maxsize=1 << 18)
def _normalize(compact: str) -> Phone:
    if not compact:
        raise InvalidPhone("is empty")
    if not _DIGITS.fullmatch(compact):
        if any(ch.isalpha() for ch in compact):
            raise InvalidPhone("contains letters (a typo such as o for 0, or an extension)")
        raise InvalidPhone("has characters other than digits, spaces, - . ( ) / and a leading +")
    nsn = _national_significant_number(compact)
    if not nsn.startswith("8"):
        raise InvalidPhone("is not a mobile number (Indonesian mobiles start with 08 or +62 8)")
    if not MIN_NSN_DIGITS <= len(nsn) <= MAX_NSN_DIGITS:
        raise InvalidPhone(
            f"has {len(nsn) + 1} digits in 08… form, expected "
            f"{MIN_NSN_DIGITS + 1} to {MAX_NSN_DIGITS + 1}"
        )
    parsed = phonenumbers.parse(f"+62{nsn}", None)
    assigned = phonenumbers.is_valid_number(parsed)
    if assigned and phonenumbers.number_type(parsed) not in _MOBILE_TYPES:
        raise InvalidPhone("is a toll-free, premium or other non-mobile service number")
    return Phone(
        national="0" + phonenumbers.national_significant_number(parsed),
        e164=phonenumbers.format_number(parsed, PhoneNumberFormat.E164),
        assigned=assigned,
    )


def _national_significant_number(compact: str) -> str:
    """Strip the Indonesian prefix: +62, 0062, 62, 0, or none (the sheet dropped the 0 of 08…)."""
    if compact.startswith("+"):
        if not compact.startswith("+62"):
            raise InvalidPhone("has a foreign country code (expected +62 or 0)")
        rest = compact[3:]
    elif compact.startswith("0062"):
        rest = compact[4:]
    elif compact.startswith("00"):
        raise InvalidPhone("has a foreign international prefix (expected +62, 0062 or 0)")
    elif compact.startswith("62"):
        rest = compact[2:]
    elif compact.startswith("0"):
        return compact[1:]
    else:
        return compact
    # "+62 (0)812…" is a common way of writing the trunk zero after the country code.
    return rest[1:] if rest.startswith("0") else rest
