"""Keeping NIKs and phone numbers out of logs, reports and the ledger.

Logs and reports show masked values (enough for a field officer to recognise a row, not enough
to identify a person); the ledger stores keyed hashes, so a leaked ledger reveals nothing without
the key held in Secret Manager.
"""

from __future__ import annotations

import hashlib
import hmac

#: Used when no key is configured (local runs and tests only; production reads Secret Manager).
DEVELOPMENT_LEDGER_KEY = b"phonesync-development-ledger-key"
_LONGEST_MASK = 40


def mask_nik(nik: str) -> str:
    """``3171044203920001`` → ``3171********0001`` (region code and last four digits only)."""
    value = nik.strip()
    if len(value) <= 8:
        return "*" * len(value)
    if len(value) > _LONGEST_MASK:  # a hostile cell: a mask as long as it would fill a report
        return f"{value[:4]}***({len(value):,} characters)***{value[-4:]}"
    return f"{value[:4]}{'*' * (len(value) - 8)}{value[-4:]}"


def mask_phone(phone: str) -> str:
    """``081234567890`` → ``0812******90``."""
    value = phone.strip()
    if len(value) <= 6:
        return "*" * len(value)
    return f"{value[:4]}{'*' * (len(value) - 6)}{value[-2:]}"


def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 of ``value``: a stable pseudonym that cannot be reversed without ``key``."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
