"""Rows waiting on a field officer, from one night to the next: which rows a night takes up
again, and how their outcomes move to it (docs/decisions.md, records 100-102).

The store keeps them (:class:`~common.store.WaitingRow`); :mod:`common.recording` keeps and
forgets them with the rows it records; :class:`common.planning.Recheck` finds them in the sheet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date

from common.outcomes import RowOutcome, Status
from common.planning import Plan
from common.recording import RowRecorder, RowResult
from common.store import StateStore, WaitingRow


def waiting_in_reach(
    store: StateStore, run_date: str, read_at: str, horizon: date
) -> list[WaitingRow]:
    """The rows a night of ``run_date`` takes up again: those earlier reads than ``read_at``
    left waiting, dated up to the night and within ACTION_DAYS (``horizon`` on; an unreadable
    date is bounded by its ``since`` instead, see :class:`~common.planning.Recheck`). Those
    dated before ``horizon`` are forgotten: their last notice was given (their outcome stays
    where it is). A later read's rows are its own, untouched."""
    earlier = [w for w in store.waiting_rows() if w.read_at < read_at]
    in_reach = [w for w in earlier if not w.sheet_date or w.sheet_date >= horizon.isoformat()]
    gone = [w.key for w in earlier if w not in in_reach]
    if gone:
        store.update_waiting(drop=gone)
    return [w for w in in_reach if w.sheet_date <= run_date]


def take_up(
    store: StateStore, run_date: str, execution: str, waiting: Sequence[WaitingRow], plan: Plan
) -> None:
    """The rows that waited (``waiting``, as planned in ``plan``) move to ``execution``'s run
    of ``run_date``: each one's outcome in the run that held it becomes ``superseded`` (that
    run's counts move: a run whose waiting rows all moved on ``succeeds``) and the store forgets
    it; the recorder keeps again those this run records still waiting. One taken up that goes
    on to the registry stays kept until its shard records it, so that a night dying in between
    loses none."""
    found = {w.key: row for row, w in plan.taken_up.items()}
    moved: dict[tuple[str, str], list[RowResult]] = {}
    for w in waiting:
        if (w.run_date, w.execution) == (run_date, execution):
            continue  # a retried task 0: already this run's
        if w.key in found:
            reason = f"taken up again by the run of {run_date} (row {found[w.key]})"
        else:
            reason = f"not found as it was by the run of {run_date} (edited, moved or deleted)"
        outcome = RowOutcome.of(w.row, Status.SUPERSEDED, reason, nik=w.nik_masked)
        moved.setdefault((w.run_date, w.execution), []).append(RowResult(outcome))
    for (earlier_date, earlier_execution), results in moved.items():
        RowRecorder(store, earlier_date, earlier_execution, earlier_run=True).record(results)
    kept = [
        replace(plan.taken_up[c.row], sheet_date=c.date.isoformat(), row=c.row)
        for c in plan.candidates
        if c.row in plan.taken_up
    ]
    store.update_waiting(put=kept, drop=[w.key for w in waiting])
