"""Earlier runs still ``partial`` a day after they ended: work that nobody finished.

A ``deferred`` row is the replay function's for about an hour (then its message is
dead-lettered, and that alert pages); an ``error`` row is on-call's from the start. A run
still ``partial`` when a later night's run ends means nobody finished it: a dead letter drained
without replaying its date, an ``error`` row nobody sent again. The night's closing task logs
one ``run_unsettled`` line per such run of the :data:`LOOKBACK_DAYS` dates before its own,
every night until the run settles (a replay or a rerun), and the alert "runs left partial"
pages on those lines (docs/runbook.md).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from common.outcomes import NOT_YET_APPLIED
from common.store import RunState, RunStatus, StateStore
from common.telemetry import log_event

#: How many dates before the night's own are looked at (one read each).
LOOKBACK_DAYS = 14
#: How long after it ended a partial run counts as left: less than a day, so that the next
#: night's run (about 24 hours later) reports the one before it.
LEFT_AFTER_SECONDS = 20 * 3600


def unsettled_runs(store: StateStore, run_date: str, now: float) -> list[RunState]:
    """The runs of the dates before ``run_date`` (newest first) still partial at ``now``,
    ended at least :data:`LEFT_AFTER_SECONDS` before it."""
    day = date.fromisoformat(run_date)
    found = []
    for back in range(1, LOOKBACK_DAYS + 1):
        run = store.get_run((day - timedelta(days=back)).isoformat())
        if (
            run is not None
            and run.status is RunStatus.PARTIAL
            and run.finished_at is not None
            and now - run.finished_at >= LEFT_AFTER_SECONDS
        ):
            found.append(run)
    return found


def log_unsettled_runs(store: StateStore, run_date: str, now: float) -> None:
    """One ``run_unsettled`` line per run :func:`unsettled_runs` finds. Never raises: a check
    that cannot read must not fail (and so retry) a finished run; it says so instead."""
    try:
        runs = unsettled_runs(store, run_date, now)
    except Exception as exc:
        log_event(
            "unsettled_unchecked",
            f"earlier runs left partial could not be checked: {type(exc).__name__}: {exc}",
            severity=logging.WARNING,
        )
        return
    for run in runs:
        waiting = {
            s.value: run.counts[s.value] for s in sorted(NOT_YET_APPLIED) if run.counts.get(s.value)
        }
        hours = int((now - (run.finished_at or now)) // 3600)
        log_event(
            "run_unsettled",
            f"the run of {run.run_date} is still partial {hours} h after it ended: {waiting}",
            severity=logging.WARNING,
            unsettled_date=run.run_date,
            unsettled_execution=run.execution,
            waiting=waiting,
            hours_since_end=hours,
        )
