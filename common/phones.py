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
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import phonenumbers

from common.sheet import too_long

# Separators people type inside a number: whitespace (incl. non-breaking), - . ( ) /
_SEPARATORS = re.compile(r"[\s\u00a0\u2007\u202f\-.()/]+")
_DIGITS = re.compile(r"\+?[0-9]+")  # not \d, which also takes Arabic-Indic and other digits
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
    """Canonical form of an Indonesian mobile number, or :class:`InvalidPhone` saying why not.

    NFKC first turns full-width digits, plus sign and separators (a phone keyboard's or an IME's)
    into their ASCII forms.
    """
    reason = too_long(raw)
    if reason is not None:
        raise InvalidPhone(reason)
    return _normalize(_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)))


def holds(cell: str, phone: Phone) -> bool:
    """Whether ``cell`` holds ``phone`` in any accepted spelling (``+6281…``, ``0812-…``)."""
    if cell == phone.national or cell == phone.e164:
        return True
    try:
        return normalize_phone(cell).e164 == phone.e164
    except InvalidPhone:
        return False


# Small: most cells hold distinct numbers. A cache of every number of a 100,000-row sheet kept
# 100,000 objects alive for the collector to traverse again at every full collection.
@lru_cache(maxsize=4096)
def _normalize(compact: str) -> Phone:
    if not compact:
        raise InvalidPhone("is empty")
    if not _DIGITS.fullmatch(compact):
        if any(ch.isalpha() for ch in compact):
            raise InvalidPhone("contains letters (a typo such as o for 0, or an extension)")
        if any(ch.isdigit() and not ch.isascii() for ch in compact):
            raise InvalidPhone("has digits other than 0-9 (retype it with Latin digits)")
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


def _desc_pattern(desc: Any, length: int) -> str | None:
    """One number type's pattern for numbers of ``length`` digits, or None if it cannot match.

    Mirrors phonenumbers' ``_is_number_matching_desc``: the type's possible lengths (if it
    lists any) must include the length, and its national number pattern must match in full.
    """
    if desc is None or desc.national_number_pattern is None:
        return None
    own = frozenset(n for n in desc.possible_length or () if n > 0)
    if own and length not in own:
        return None
    return f"(?:{desc.national_number_pattern})"


def _compile_classifier(metadata: Any) -> dict[int, re.Pattern[str]]:
    """Per NSN length, one regex whose matching group names the number type.

    ``phonenumbers.number_type`` tries the general description, then the service types, then
    fixed line and mobile (a number matching both is "fixed line or mobile", a mobile for us).
    Alternation in that order inside one ``fullmatch`` gives the same answer with one regex call
    instead of up to eleven.
    """
    general = metadata.general_desc
    services = [getattr(metadata, name) for name in _SERVICE_TYPES]
    classifiers: dict[int, re.Pattern[str]] = {}
    for length in frozenset(n for n in general.possible_length if n > 0):
        general_pattern = _desc_pattern(general, length)
        service = [p for d in services if (p := _desc_pattern(d, length))]
        kinds = {
            "service": "|".join(service),
            "mobile": _desc_pattern(metadata.mobile, length),
            "fixed": _desc_pattern(metadata.fixed_line, length),
        }
        alternatives = "|".join(f"(?P<{kind}>{p})" for kind, p in kinds.items() if p)
        if general_pattern and alternatives:
            classifiers[length] = re.compile(f"(?={general_pattern}\\Z)(?:{alternatives})")
    return classifiers


# phonenumbers.number_type checks these before fixed line / mobile, in this order.
_SERVICE_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)
_ID_METADATA = phonenumbers.PhoneMetadata.metadata_for_region("ID")
assert _ID_METADATA is not None, "phonenumbers ships no metadata for Indonesia"
_CLASSIFIERS = _compile_classifier(_ID_METADATA)


def classify_nsn(nsn: str) -> str:
    """``mobile`` (incl. fixed-or-mobile), ``fixed``, ``service`` or ``unknown`` (unassigned)."""
    classifier = _CLASSIFIERS.get(len(nsn))
    match = classifier.fullmatch(nsn) if classifier is not None else None
    if match is None or match.lastgroup is None:
        return "unknown"
    return match.lastgroup


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
