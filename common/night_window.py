"""Which dates a night covers: its own and the lookback's, plus the dates no finished run
covered (missed nights), at most ``CATCH_UP_DAYS`` back.

A date is covered once a run whose window holds it has finished (``succeeded``,
``needs_action`` or ``partial``: every row of the window got an outcome). A night looks at the
runs of the last ``ACTION_DAYS`` and takes the dates none of them covered, from the oldest
on, into its window; the window stays one span of dates, so that per NIK the latest row of it
wins as the sheet rules say. What it cannot take (older than ``CATCH_UP_DAYS``) it reports as
unsynced, night after night, until a backfill (``RUN_DATE``) covers it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from common.store import RunState


@dataclass(frozen=True, slots=True)
class NightWindow:
    first: date
    last: date  # the run's date
    #: Dates of the window before the run's date that no finished run had covered.
    caught_up: tuple[date, ...] = ()
    #: Dates no finished run covers, this one included: older than the catch-up reaches, or
    #: (a backfill of an older date) after the run's date.
    unsynced: tuple[date, ...] = ()

    def dates(self) -> list[date]:
        return list(days(self.first, self.last))


def days(first: date, last: date) -> Iterator[date]:
    for n in range((last - first).days + 1):
        yield first + timedelta(days=n)


def night_window(
    run_date: date,
    runs: Sequence[RunState],
    *,
    lookback_days: int,
    catch_up_days: int,
    action_days: int,
) -> NightWindow:
    """The window of ``run_date``'s run, from the date's other runs (``runs``: at least those
    dated ``action_days`` before it or later, as ``StateStore.runs_since`` gives them).

    With no finished run in that span (the first run, or none for ``action_days``) there is
    nothing known to catch up: the window is the lookback's."""
    plain = NightWindow(run_date - timedelta(days=lookback_days), run_date)
    finished = [r for r in runs if r.finished and r.run_date != run_date.isoformat()]
    if not finished:
        return plain
    covered: set[date] = set()
    for run in finished:
        last = date.fromisoformat(run.run_date)
        covered.update(days(date.fromisoformat(run.window_first or run.run_date), last))
    start = max(run_date - timedelta(days=action_days), min(covered))
    end = max(run_date, max(date.fromisoformat(r.run_date) for r in finished))
    missed = [d for d in days(start, end) if d not in covered and d != run_date]
    before = [d for d in missed if d < run_date]
    first = plain.first
    if before:
        first = min(first, max(before[0], run_date - timedelta(days=catch_up_days)))
    return NightWindow(
        first,
        run_date,
        caught_up=tuple(d for d in before if d >= first),
        unsynced=tuple(d for d in missed if d < first or d > run_date),
    )
