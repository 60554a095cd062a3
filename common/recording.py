"""Recording rows' results: the one path every row's end takes, wherever it was decided.

The nightly job's synced rows, the rows the manifest decides from the sheet alone, the replay
function's row and ``phonesync replay --via direct`` all end here, in this order:

1. a deferred row's Pub/Sub message, when there is a failure topic (published first: a crash
   in between leaves a message whose replay finds the row done, never a deferred row without
   one);
2. the outcome in the store (the job's rows as a batch; a replayed row moves its run's counts);
3. the ledger entry, when the patient now holds the number;
4. one ``row_outcome`` log line, the same fields from every caller (the rows metric counts
   them by ``status`` and ``source``), but for ``superseded`` rows, which need nobody.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from common.failures import FailureMessage
from common.outcomes import RowOutcome, Status
from common.store import LedgerEntry, StateStore, WorkItem
from common.telemetry import log_event

#: Who recorded the row: the nightly job, the replay function, or an operator's replay.
Source = Literal["job", "replay", "operator"]
#: Sends failure messages on; raises when any was not accepted (the caller is retried).
Publish = Callable[[Sequence[FailureMessage]], object]

_SEVERITY = {
    Status.DEFERRED: logging.WARNING,
    Status.ERROR: logging.ERROR,
    Status.INVALID_DATE: logging.WARNING,
    Status.INVALID_NIK: logging.WARNING,
    Status.INVALID_PHONE: logging.WARNING,
}
#: Recorded, not logged: a row replaced by a later one of its patient needs nobody.
_UNLOGGED = frozenset({Status.SUPERSEDED})


@dataclass(frozen=True, slots=True)
class RowResult:
    """A row's end. ``item`` is None for a row decided from the sheet alone (it never became
    work); ``ledger`` is set when the patient now holds the row's number; ``attempts`` is how
    many attempts the last request of a deferred row made."""

    outcome: RowOutcome
    item: WorkItem | None = None
    ledger: LedgerEntry | None = None
    attempts: int = 0
    #: The server refused our credentials: no later row can succeed, stop sending.
    auth_refused: bool = False


@dataclass(frozen=True, slots=True)
class RowRecorder:
    """Records the results of ``execution``'s run of ``run_date``.

    ``source`` "job" records a batch of a running run; "replay" and "operator" record one
    replayed row each, moving the run's counts (and only while ``execution`` owns the date).
    ``publish`` (the job, when it has a failure topic) sends deferred rows on for replay; a
    replay never publishes: Pub/Sub redelivers its own message.
    """

    store: StateStore
    run_date: str
    execution: str
    source: Source = "job"
    publish: Publish | None = None

    def record(self, results: Sequence[RowResult]) -> None:
        """Record ``results`` (blocking: async callers run it in a thread)."""
        deferred = [r for r in results if r.outcome.status is Status.DEFERRED and r.item]
        if deferred and self.publish is not None:
            self.publish([self._message(r) for r in deferred])
        outcomes = [r.outcome for r in results]
        if self.source == "job":
            self.store.record_outcomes(self.run_date, outcomes)
        else:
            for outcome in outcomes:
                self.store.record_replay(self.run_date, self.execution, outcome, time.time())
        self.store.ledger_put([r.ledger for r in results if r.ledger is not None])
        for outcome in outcomes:
            if outcome.status not in _UNLOGGED:
                self._log(outcome)

    def _message(self, result: RowResult) -> FailureMessage:
        item = result.item
        assert item is not None
        return FailureMessage.of(
            item, self.run_date, self.execution, result.outcome.reason, result.attempts
        )

    def _log(self, outcome: RowOutcome) -> None:
        log_event(
            "row_outcome",
            f"row {outcome.row}: {outcome.status.value}",
            severity=_SEVERITY.get(outcome.status, logging.INFO),
            run_date=self.run_date,
            execution=self.execution,
            source=self.source,
            row=outcome.row,
            status=outcome.status.value,
            nik=outcome.nik_masked,
            reason=outcome.reason,
        )
