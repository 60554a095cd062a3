"""Which sheet rows take part in a run, and which one wins for each patient.

Everything here is decided from the sheet alone, before any registry call: invalid cells and
rows replaced by a later one end here with an outcome, rows of other dates are counted; the
winners go on as :class:`Candidate` rows. Rows of earlier dates still waiting on a field
officer (:class:`Recheck`) take part again: the night finds out whether they were fixed.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date

from common.outcomes import RowOutcome, Status
from common.phones import InvalidPhone, Phone, normalize_phone
from common.sheet import PHONE_COLUMN, InvalidCell, SheetRow, parse_date, parse_nik
from common.store import WaitingRow


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


class Recheck:
    """The rows waiting on a field officer (``waiting``, from the store) that a night takes up
    again, and how it finds them in the sheet it reads: a row dated as it was, at the same row
    number or with the same NIK (compared by ``nik_key``, the ledger's HMAC). A row whose date
    could not be read is found by its row number once its date is fixed; while it is still
    unreadable, by its row number or NIK. Those waiting since before ``checked_since`` (an
    unreadable date past ``ACTION_DAYS``) are no longer reported: kept, counted as other dates.
    """

    def __init__(
        self, waiting: Sequence[WaitingRow], nik_key: Callable[[str], str], checked_since: date
    ) -> None:
        self.nik_key = nik_key
        self.checked_since = checked_since.isoformat()
        self._by_row: dict[tuple[int, int], WaitingRow] = {}
        self._by_nik: dict[tuple[int, str], WaitingRow] = {}
        self._suffixes: set[str] = set()  # a NIK's last four digits, before any HMAC is made
        self.dates: set[int] = set()  # ordinals of the waiting rows' dates
        self.undated_rows: set[int] = set()  # row numbers of those whose date was unreadable
        for row in waiting:
            day = date.fromisoformat(row.sheet_date).toordinal() if row.sheet_date else 0
            self._by_row[(day, row.row)] = row
            if day:
                self.dates.add(day)
            else:
                self.undated_rows.add(row.row)
            if row.nik_key:
                self._by_nik[(day, row.nik_key)] = row
                self._suffixes.add(row.nik_masked[-4:])

    def __bool__(self) -> bool:
        return bool(self._by_row)

    @property
    def oldest(self) -> date | None:
        """The oldest date a row taken up again can have (an unreadable date's fix: any)."""
        if self.undated_rows:
            return date.fromisoformat(self.checked_since)
        return date.fromordinal(min(self.dates)) if self.dates else None

    def find(self, sheet_row: SheetRow, day: date | None) -> WaitingRow | None:
        """The waiting row ``sheet_row`` (dated ``day``; None: unreadable) is, if any."""
        number = sheet_row.row
        if day is None:
            return self._by_row.get((0, number)) or self._by_nik_of(sheet_row, 0)
        ordinal = day.toordinal()
        if ordinal in self.dates:
            found = self._by_row.get((ordinal, number)) or self._by_nik_of(sheet_row, ordinal)
            if found is not None:
                return found
        if number in self.undated_rows and day.isoformat() >= self.checked_since:
            return self._by_row[(0, number)]  # an unreadable date, fixed in place
        return None

    def expired(self, waiting: WaitingRow) -> bool:
        return not waiting.sheet_date and waiting.since < self.checked_since

    def _by_nik_of(self, sheet_row: SheetRow, day: int) -> WaitingRow | None:
        if sheet_row.nik.strip()[-4:] not in self._suffixes:
            return None
        try:
            nik = parse_nik(sheet_row.nik)
        except InvalidCell:
            return None
        return self._by_nik.get((day, self.nik_key(nik)))


@dataclass(slots=True)
class Plan:
    candidates: list[Candidate] = field(default_factory=list)
    #: Rows of the window (and rows whose date is unreadable) decided from the sheet alone.
    decided: list[RowOutcome] = field(default_factory=list)
    #: Rows dated outside the window take no part: their numbers and dates (as ordinals) are
    #: kept, not an outcome each; a sheet that grew over many nights is mostly such rows.
    other_rows: array[int] = field(default_factory=lambda: array("l"))
    other_days: array[int] = field(default_factory=lambda: array("l"))
    #: Where each decided row that may wait on a field officer is: its date (ISO, "" when
    #: unreadable) and NIK ("" when invalid), by row.
    places: dict[int, tuple[str, str]] = field(default_factory=dict)
    #: The waiting rows (:class:`Recheck`) found in the sheet again, by the row found.
    taken_up: dict[int, WaitingRow] = field(default_factory=dict)

    def since(self, row: int) -> str:
        """Since when ``row`` was waiting on a field officer, if the night took it up again."""
        waiting = self.taken_up.get(row)
        return waiting.since if waiting is not None else ""

    def other_date_outcomes(self) -> Iterator[RowOutcome]:
        """An ``other_date`` outcome for each row outside the window (for a full report)."""
        for row, day in zip(self.other_rows, self.other_days, strict=True):
            yield RowOutcome.of(
                row, Status.OTHER_DATE, f"dated {date.fromordinal(day)}, not in this run"
            )


#: The row that wins for a NIK so far: its date, row number and phone cell.
_Winner = tuple[date, int, str]


def plan_rows(
    rows: Iterable[SheetRow], window: DateWindow | None = None, recheck: Recheck | None = None
) -> Plan:
    """Apply the sheet rules: per NIK the latest date wins, then the last row in sheet order.

    Only rows in ``window`` are applied, but a row dated after the window supersedes the
    NIK's rows inside it: rerunning an old date never brings back a number the officer has
    replaced since. A winner whose phone is invalid applies nothing: never fall back to an
    older number the officer already replaced. Rows of ``recheck`` dated before the window
    take part as rows of the window do, and are superseded by any later row of their NIK.

    Rows are planned as they come (``rows`` may be a stream) and only what the window needs is
    kept: per NIK its winning row so far, per NIK its latest row dated after the window, and
    of every other row its number and date (and, while rows are taken up again, its NIK).
    Memory follows the window, not the sheet.
    """
    window = window or DateWindow()
    recheck = recheck or None
    plan = Plan()
    winners: dict[str, _Winner] = {}
    later: dict[str, tuple[date, int]] = {}  # NIK → its latest row dated after the window
    tracked = _Tracked.since(recheck, window)
    before = window.first.toordinal() if window.first is not None else 0
    for sheet_row in rows:
        try:
            day = parse_date(sheet_row.date)
        except InvalidCell as exc:
            _undated(plan, recheck, sheet_row, str(exc))
            continue
        waiting = None
        if day not in window:
            ordinal = day.toordinal()
            if (
                recheck is not None
                and ordinal < before
                and (ordinal in recheck.dates or sheet_row.row in recheck.undated_rows)
            ):
                waiting = recheck.find(sheet_row, day)
            if waiting is None:
                plan.other_rows.append(sheet_row.row)
                plan.other_days.append(ordinal)
                if window.last is not None and day > window.last:
                    _note_later(later, sheet_row, day)
                elif tracked is not None and ordinal >= tracked.start:
                    tracked.note(sheet_row.nik, ordinal, sheet_row.row)
                continue
        elif recheck:
            waiting = recheck.find(sheet_row, day)
        if waiting is not None:
            plan.taken_up[sheet_row.row] = waiting
        try:
            nik = parse_nik(sheet_row.nik)
        except InvalidCell as exc:
            since = plan.since(sheet_row.row)
            plan.decided.append(_rejected(sheet_row, Status.INVALID_NIK, str(exc), since))
            plan.places[sheet_row.row] = (day.isoformat(), "")
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
                loser,
                Status.SUPERSEDED,
                f"row {winner} gives a newer number for this NIK",
                nik=nik,
                since=plan.since(loser),
            )
        )
    newer = tracked.newer(winners, window) if tracked is not None else {}
    for nik, (day, row, phone_cell) in sorted(winners.items(), key=lambda i: i[1][1]):
        if nik in later or nik in newer:
            later_day, later_row = later[nik] if nik in later else newer[nik]
            after = "after this run" if nik in later else "not in this run"
            plan.decided.append(
                RowOutcome.of(
                    row,
                    Status.SUPERSEDED,
                    f"row {later_row} (dated {later_day}, {after}) gives a newer number"
                    " for this NIK",
                    nik=nik,
                    since=plan.since(row),
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
                    since=plan.since(row),
                )
            )
            plan.places[row] = (day.isoformat(), nik)
            continue
        plan.candidates.append(Candidate(row, day, nik, phone))
    plan.decided.sort(key=lambda o: o.row)
    return plan


def _undated(plan: Plan, recheck: Recheck | None, sheet_row: SheetRow, reason: str) -> None:
    """A row whose date cannot be read: rejected, or past ``ACTION_DAYS`` counted with the
    rows of other dates (recorded, so that it is not reported again as new)."""
    waiting = recheck.find(sheet_row, None) if recheck else None
    try:
        nik = parse_nik(sheet_row.nik)
    except InvalidCell:
        nik = ""
    plan.places[sheet_row.row] = ("", nik)
    if waiting is None:
        plan.decided.append(_rejected(sheet_row, Status.INVALID_DATE, reason))
        return
    plan.taken_up[sheet_row.row] = waiting
    if recheck is not None and recheck.expired(waiting):
        plan.decided.append(
            RowOutcome.of(
                sheet_row.row,
                Status.OTHER_DATE,
                f"{reason}; reported to the officers since {waiting.since}, no longer checked",
                nik=sheet_row.nik,
                since=waiting.since,
            )
        )
        return
    plan.decided.append(_rejected(sheet_row, Status.INVALID_DATE, reason, waiting.since))


@dataclass(slots=True)
class _Tracked:
    """The NIK, date and row of every row dated between the oldest row taken up again and the
    window: a later one of these supersedes a row taken up again (16-digit NIKs as integers)."""

    start: int
    niks: array[int] = field(default_factory=lambda: array("q"))
    #: Date ordinal and row number, as ``ordinal << 32 | row`` (they order as the pair does).
    places: array[int] = field(default_factory=lambda: array("q"))

    @classmethod
    def since(cls, recheck: Recheck | None, window: DateWindow) -> _Tracked | None:
        oldest = recheck.oldest if recheck else None
        if oldest is None or window.first is None or oldest >= window.first:
            return None
        return cls(oldest.toordinal())

    def note(self, nik_cell: str, ordinal: int, row: int) -> None:
        if not (len(nik_cell) == 16 and nik_cell.isascii() and nik_cell.isdigit()):
            try:  # as parse_nik's own first check: most cells are 16 digits as they stand
                nik_cell = parse_nik(nik_cell)
            except InvalidCell:
                return
        self.niks.append(int(nik_cell))
        self.places.append(ordinal << 32 | row)

    def newer(self, winners: dict[str, _Winner], window: DateWindow) -> dict[str, tuple[date, int]]:
        """Per NIK of a winner taken up again, its latest row that is later than the winner."""
        first = window.first.toordinal() if window.first else 0
        wanted = {
            int(nik): w[0].toordinal() << 32 | w[1]
            for nik, w in winners.items()
            if w[0].toordinal() < first
        }
        found: dict[int, int] = {}
        for nik, place in zip(self.niks, self.places, strict=True):
            mine = wanted.get(nik)
            if mine is not None and place > mine and place > found.get(nik, 0):
                found[nik] = place
        return {
            f"{nik:016d}": (date.fromordinal(place >> 32), place & 0xFFFFFFFF)
            for nik, place in found.items()
        }


def _note_later(later: dict[str, tuple[date, int]], sheet_row: SheetRow, day: date) -> None:
    """Remember a row dated after the window if it is its NIK's latest so far."""
    try:
        nik = parse_nik(sheet_row.nik)
    except InvalidCell:
        return  # cannot belong to any NIK; reported as other_date
    if nik not in later or day >= later[nik][0]:
        later[nik] = (day, sheet_row.row)


def _rejected(sheet_row: SheetRow, status: Status, reason: str, since: str = "") -> RowOutcome:
    return RowOutcome.of(sheet_row.row, status, reason, nik=sheet_row.nik, since=since)


def shard_of(nik: str, task_count: int) -> int:
    """The task that owns a NIK: a stable hash (not Python's salted ``hash``) modulo the count."""
    digest = hashlib.sha256(nik.encode()).digest()
    return int.from_bytes(digest[:8], "big") % task_count
