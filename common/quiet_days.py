"""Days of the week on which the officers record no visits, and whether a night expects rows.

A night whose window holds no row is normal when every date of the window is such a day (a
Sunday night's window of Saturday and Sunday, for officers who work Monday to Friday, with
``LOOKBACK_DAYS=1``); on any other night an empty window means the rows went somewhere else
(a wrong tab, dates typed with the wrong year) and task 0 says so on its ``manifest_written``
line (``rows_expected``), which the "no rows in the window" alert reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator, PlainSerializer
from pydantic_settings import NoDecode

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: In ``date.weekday()`` order.
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)


def _parse(value: object) -> object:
    """``"sat,sun"`` (the environment's form, any case, spaces allowed) as a set of names."""
    if isinstance(value, str):
        return frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    return value


def weekday_list(days: Iterable[Weekday]) -> str:
    """``sat,sun``: the environment's form, in the week's order."""
    chosen = set(days)
    return ",".join(day for day in WEEKDAYS if day in chosen)


#: A setting's type: comma-separated day names (``mon`` … ``sun``) in the environment.
QuietWeekdays = Annotated[
    frozenset[Weekday],
    NoDecode,
    BeforeValidator(_parse),
    PlainSerializer(weekday_list, return_type=str),
]


def rows_expected(first: date, last: date, quiet: Iterable[Weekday]) -> bool:
    """Whether rows dated ``first``..``last`` were to be expected: some date of it is not a
    quiet day."""
    days_off = {WEEKDAYS.index(day) for day in quiet}
    span = (last - first).days + 1
    return any((first + timedelta(days=n)).weekday() not in days_off for n in range(span))
