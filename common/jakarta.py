"""Asia/Jakarta time, the officers' and the schedule's clock.

Indonesia's western zone (WIB) has been UTC+7 without daylight saving since 1964, so a fixed
offset is exact and needs no tz database in a slim container image.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

JAKARTA = timezone(timedelta(hours=7), "WIB")


def jakarta_today() -> date:
    """Today's date in Jakarta: the run date when none is given."""
    return datetime.now(JAKARTA).date()


def jakarta_now_iso() -> str:
    """Now in Asia/Jakarta, ISO 8601 with microseconds and offset (``…T23:45:00.123456+07:00``)."""
    return datetime.now(JAKARTA).isoformat(timespec="microseconds")


def jakarta_time(timestamp: float) -> str:
    """``2025-09-23 23:00:05+07:00``: a Unix time as officers read it, offset shown."""
    return datetime.fromtimestamp(timestamp, JAKARTA).isoformat(sep=" ", timespec="seconds")
