"""Keeping NIKs, phone numbers and secrets out of logs, reports, messages and the ledger.

Logs and reports show masked values (enough for a field officer to recognise a row, not enough
to identify a person); the ledger stores keyed hashes, so a leaked ledger reveals nothing without
the key held in Secret Manager. Free text is redacted before it is shown: :func:`redact` in
every log line, :func:`mask_digit_runs` in what a server wrote, :func:`mask_secrets` wherever
an answer could quote a key, secret or token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

#: Used when no key is configured (local runs and tests only; production reads Secret Manager).
DEVELOPMENT_LEDGER_KEY = b"phonesync-development-ledger-key"
_LONGEST_MASK = 40
# A 16-digit run (a NIK) or an Indonesian mobile in any common spelling.
_PII = re.compile(r"(?<!\d)\d{16}(?!\d)|(?<![\d*])(?:\+?62|0)8\d{7,11}(?!\d)")
_LONG_DIGITS = re.compile(r"\d{8,}")


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


def redact(text: str) -> str:
    """NIK- and mobile-shaped runs → ``[redacted]``; masked values (``3171********0001``) and
    other numbers (counts, durations) pass. The last line of defence of every log line."""
    return _PII.sub("[redacted]", text)


def mask_digit_runs(text: str) -> str:
    """Every run of 8 or more digits → as many ``*``: text a server wrote may echo a NIK or a
    phone number in any form, and it holds no number we need to read."""
    return _LONG_DIGITS.sub(lambda m: "*" * len(m.group()), text)


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """Each of ``secrets`` (an API key, a client secret, a token) in ``text`` → ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 of ``value``: a stable pseudonym that cannot be reversed without ``key``."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
