"""Indonesian mobile numbers as field officers type them, turned into one canonical form.

phonenumbers' metadata for Indonesia decides validity and number type, but its parser is lenient
in ways that would let bad sheet cells through: it drops a leading letter (``o812…`` parses),
misreads ``0062…`` and calls ``12345`` "possible". So the shape is checked here first, and only
a national significant number (NSN) that already looks like ``8…`` is classified.

Classification uses the patterns of ``PhoneMetadata.metadata_for_region("ID")`` compiled once,
in the order ``phonenumbers.number_type`` applies them: parsing each number through the library
costs ~100 µs, too slow for 100,000-row sheets. A property test holds the two in agreement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import phonenumbers

# Separators people type inside a number: whitespace (incl. non-breaking), - . ( ) /
_SEPARATORS = re.compile(r"[\s\u00a0\u2007\u202f\-.()/]+")
_DIGITS = re.compile(r"\+?\d+")
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
    kind = classify_nsn(nsn)
    if kind == "service":
        raise InvalidPhone("is a toll-free, premium or other non-mobile service number")
    return Phone(national=f"0{nsn}", e164=f"+62{nsn}", assigned=kind == "mobile")


class _Desc:
    """One number type of the ID metadata: its possible lengths and national number pattern."""

    def __init__(self, desc: Any) -> None:
        self.pattern = re.compile(desc.national_number_pattern) if desc is not None else None
        lengths = tuple(desc.possible_length or ()) if desc is not None else ()
        self.lengths = frozenset(n for n in lengths if n > 0)

    def matches(self, nsn: str) -> bool:
        if self.pattern is None or (self.lengths and len(nsn) not in self.lengths):
            return False
        return self.pattern.fullmatch(nsn) is not None


_ID_METADATA = phonenumbers.PhoneMetadata.metadata_for_region("ID")
assert _ID_METADATA is not None, "phonenumbers ships no metadata for Indonesia"
_ID = _ID_METADATA
_GENERAL = _Desc(_ID.general_desc)
# phonenumbers.number_type checks these before fixed line / mobile, in this order.
_SERVICES = tuple(
    _Desc(getattr(_ID, name))
    for name in (
        "premium_rate",
        "toll_free",
        "shared_cost",
        "voip",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
    )
)
_MOBILE = _Desc(_ID.mobile)
_FIXED = _Desc(_ID.fixed_line)


def classify_nsn(nsn: str) -> str:
    """``mobile`` (incl. fixed-or-mobile), ``fixed``, ``service`` or ``unknown`` (unassigned)."""
    if not _GENERAL.matches(nsn):
        return "unknown"
    if any(desc.matches(nsn) for desc in _SERVICES):
        return "service"
    if _MOBILE.matches(nsn):
        return "mobile"
    return "fixed" if _FIXED.matches(nsn) else "unknown"


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
