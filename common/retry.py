"""One retry policy for every remote call: the FHIR server, its token endpoint, the Sheets API
and Firestore.

- which answers are worth another attempt: :func:`retryable_status` (HTTP) and
  :func:`retryable_grpc` (Firestore's gRPC codes);
- how long to wait before it: :func:`backoff_delay`, exponential backoff with full jitter under
  a cap, at least what the server asked for in ``Retry-After`` (:func:`parse_retry_after`).

Each caller keeps its own loop (the FHIR client's has a circuit breaker and lets a 429 use up no
attempt) and its own base, cap and number of attempts; the rules above are the same for all.
"""

from __future__ import annotations

import email.utils
import random
import time
from datetime import UTC

#: gRPC status codes worth another attempt: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
#: INTERNAL, UNAVAILABLE. Anything else (INVALID_ARGUMENT, PERMISSION_DENIED, …) will not heal
#: by itself.
RETRYABLE_GRPC_CODES = frozenset({4, 8, 10, 13, 14})
#: The longest ``Retry-After`` honoured where the caller names no other bound: a server that
#: asks for more is down, and waiting longer would only hold up a task that has a deadline.
LONGEST_RETRY_AFTER = 60.0
# 2**60 times any sane base is far past any cap; a larger exponent would only risk float overflow.
_MAX_EXPONENT = 60


def retryable_status(status: int | None) -> bool:
    """Whether an HTTP answer is worth another attempt: none at all (``None``: a timeout or a
    connection error), 408, 429 or any 5xx. A 0 (a batch entry with no readable status) is not."""
    return status is None or status in (408, 429) or status >= 500


def retryable_grpc(code: int) -> bool:
    """Whether a gRPC status code (a Firestore write's) is worth another attempt."""
    return code in RETRYABLE_GRPC_CODES


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


def parse_retry_after(
    value: str | None, *, longest: float = LONGEST_RETRY_AFTER, now: float | None = None
) -> float:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP-date; 0 if absent or bad.

    Never more than ``longest``. ``now`` is the wall-clock time (``time.time()``) dates are
    measured from.
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
        return min(seconds, longest) if 0 < seconds < float("inf") else 0.0
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if moment.tzinfo is None:  # an HTTP-date is always GMT
        moment = moment.replace(tzinfo=UTC)
    waited = moment.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, waited), longest)
