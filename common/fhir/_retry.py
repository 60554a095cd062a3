"""Retry timing: exponential backoff with full jitter, and ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time
from datetime import UTC

# 2**60 times any sane base is far past any cap; a larger exponent would only risk float overflow.
_MAX_EXPONENT = 60


def backoff_delay(
    retry: int,
    base: float,
    cap: float,
    *,
    floor: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry).

    Full jitter — ``uniform(0, min(cap, base * 2**retry))`` — spreads retries of many callers
    that failed together; ``floor`` (a server's ``Retry-After``) is the minimum wait.
    """
    ceiling = min(cap, base * 2 ** min(max(retry, 0), _MAX_EXPONENT))
    jitter = (rng or random).uniform(0.0, ceiling)
    return max(floor, jitter)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP-date; 0 if absent or bad.

    ``now`` is the wall-clock time (``time.time()``) dates are measured from.
    """
    if value is None:
        return 0.0
    text = value.strip()
    if not text:
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if 0 < seconds < float("inf") else 0.0
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if moment.tzinfo is None:  # an HTTP-date is always GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
