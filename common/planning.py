"""Which sheet rows take part in a run, and which one wins for each patient.

Everything here is decided from the sheet alone, before any registry call: invalid cells and
rows replaced by a later one end here with an outcome, rows of other dates are counted; the
winners go on as :class:`Candidate` rows.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from common.outcomes import RowOutcome, Status
from common.phones import InvalidPhone, Phone, normalize_phone
from common.sheet import PHONE_COLUMN, InvalidCell, SheetRow, parse_date, parse_nik


@dataclass(frozen=True, slots=True)
class DateWindow:
    """Rows dated ``first``..``last`` inclusive take part; ``None`` bounds are open."""

    first: date | None = None
    last: date | None = None

    @classmethod
    def exactly(cls, day: date) -> DateWindow:
        return cls(day, day)

    def __contains__(self, day: date) -> bool:
        return (self.first is None or day >= self.first) and (self.last is None or day <= self.last)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A winning row: the number its NIK's patient should hold."""

    row: int
    date: date
    nik: str
    phone: Phone


@dataclass(slots=True)
class Plan:
    candidates: list[Candidate] = field(default_factory=list)
    #: Rows of the window (and rows whose date is unreadable) decided from the sheet alone.
    decided: list[RowOutcome] = field(default_factory=list)
    #: Rows dated outside the window take no part: their numbers and dates (as ordinals) are
    #: kept, not an outcome each; a sheet that grew over many nights is mostly such rows.
    other_rows: array[int] = field(default_factory=lambda: array("l"))
    other_days: array[int] = field(default_factory=lambda: array("l"))

    def other_date_outcomes(self) -> Iterator[RowOutcome]:
        """An ``other_date`` outcome for each row outside the window (for a full report)."""
        for row, day in zip(self.other_rows, self.other_days, strict=True):
            yield RowOutcome.of(
                row, Status.OTHER_DATE, f"dated {date.fromordinal(day)}, not in this run"
            )


#: The row that wins for a NIK so far: its date, row number and phone cell.
_Winner = tuple[date, int, str]


def plan_rows(rows: Iterable[SheetRow], window: DateWindow | None = None) -> Plan:
    """Apply the sheet rules: per NIK the latest date wins, then the last row in sheet order.

    Only rows in ``window`` are applied, but a row dated after the window supersedes the
    NIK's rows inside it: rerunning an old date never brings back a number the officer has
    replaced since. A winner whose phone is invalid applies nothing: never fall back to an
    older number the officer already replaced.

    Rows are planned as they come (``rows`` may be a stream) and only what the window needs is
    kept: per NIK its winning row so far, per NIK its latest row dated after the window, and
    of every other row its number and date. Memory follows the window, not the sheet.
    """
    window = window or DateWindow()
    plan = Plan()
    winners: dict[str, _Winner] = {}
    later: dict[str, tuple[date, int]] = {}  # NIK → its latest row dated after the window
    for sheet_row in rows:
        try:
            day = parse_date(sheet_row.date)
        except InvalidCell as exc:
            plan.decided.append(_rejected(sheet_row, Status.INVALID_DATE, str(exc)))
            continue
        if day not in window:
            plan.other_rows.append(sheet_row.row)
            plan.other_days.append(day.toordinal())
            if window.last is not None and day > window.last:
                _note_later(later, sheet_row, day)
            continue
        try:
            nik = parse_nik(sheet_row.nik)
        except InvalidCell as exc:
            plan.decided.append(_rejected(sheet_row, Status.INVALID_NIK, str(exc)))
            continue
        previous = winners.get(nik)
        if previous is None:
            winners[nik] = (day, sheet_row.row, sheet_row.phone)
            continue
        if day >= previous[0]:
            winner, loser = sheet_row.row, previous[1]
            winners[nik] = (day, sheet_row.row, sheet_row.phone)
        else:
            winner, loser = previous[1], sheet_row.row
        plan.decided.append(
            RowOutcome.of(
                loser, Status.SUPERSEDED, f"row {winner} gives a newer number for this NIK", nik=nik
            )
        )
    for nik, (day, row, phone_cell) in sorted(winners.items(), key=lambda item: item[1][1]):
        if nik in later:
            later_day, later_row = later[nik]
            plan.decided.append(
                RowOutcome.of(
                    row,
                    Status.SUPERSEDED,
                    f"row {later_row} (dated {later_day}, after this run) gives a newer number"
                    " for this NIK",
                    nik=nik,
                )
            )
            continue
        try:
            phone = normalize_phone(phone_cell)
        except InvalidPhone as exc:
            plan.decided.append(
                RowOutcome.of(
                    row,
                    Status.INVALID_PHONE,
                    f"{PHONE_COLUMN}: {exc}; nothing applied for this NIK",
                    nik=nik,
                )
            )
            continue
        plan.candidates.append(Candidate(row, day, nik, phone))
    plan.decided.sort(key=lambda o: o.row)
    return plan


def _note_later(later: dict[str, tuple[date, int]], sheet_row: SheetRow, day: date) -> None:
    """Remember a row dated after the window if it is its NIK's latest so far."""
    try:
        nik = parse_nik(sheet_row.nik)
    except InvalidCell:
        return  # cannot belong to any NIK; reported as other_date
    if nik not in later or day >= later[nik][0]:
        later[nik] = (day, sheet_row.row)


def _rejected(sheet_row: SheetRow, status: Status, reason: str) -> RowOutcome:
    return RowOutcome.of(sheet_row.row, status, reason, nik=sheet_row.nik)


def shard_of(nik: str, task_count: int) -> int:
    """The task that owns a NIK: a stable hash (not Python's salted ``hash``) modulo the count."""
    digest = hashlib.sha256(nik.encode()).digest()
    return int.from_bytes(digest[:8], "big") % task_count
