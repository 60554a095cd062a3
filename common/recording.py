"""Recording rows' results: the one path every row's end takes, wherever it was decided.

The nightly job's synced rows, the rows the manifest decides from the sheet alone, the replay
function's row and ``phonesync replay --via direct`` all end here, in this order:

1. a deferred row's Pub/Sub message, when there is a failure topic (published first: a crash
   in between leaves a message whose replay finds the row done, never a deferred row without
   one);
2. the outcome in the store (the job's rows as a batch; a replayed row moves its run's counts);
3. the ledger entry, when the patient now holds the number;
4. the row's place among the rows waiting on a field officer (``WaitingRow``): kept while it
   waits, forgotten once a row that waited is settled (applied, replaced);
5. one ``row_outcome`` log line, the same fields from every caller (the rows metric counts
   them by ``status`` and ``source``), but for ``superseded`` rows, which need nobody.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from common.failures import FailureMessage
from common.outcomes import NEEDS_OFFICER, NOT_YET_APPLIED, RowOutcome, Status
from common.store import LedgerEntry, StateStore, WaitingRow, WorkItem, waiting_key
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
#: A row that waited on an officer stays waiting through these (not settled yet; an unreadable
#: date past ACTION_DAYS is kept so that it is not reported again as new).
_STILL_WAITING = NOT_YET_APPLIED | {Status.OTHER_DATE}


@dataclass(frozen=True, slots=True)
class Place:
    """Where a row decided from the sheet alone is: its date (ISO; "" when unreadable) and NIK
    ("" when invalid) as the read ``read_at`` saw them. A synced row's is its work item's."""

    sheet_date: str
    nik: str
    read_at: str


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
    #: A row decided from the sheet alone that may wait on a field officer (see :class:`Place`).
    place: Place | None = None

    def where(self) -> Place | None:
        if self.item is not None:
            return Place(self.item.date, self.item.nik, self.item.read_at)
        return self.place


@dataclass(frozen=True, slots=True)
class RowRecorder:
    """Records the results of ``execution``'s run of ``run_date``.

    ``source`` "job" records a batch of a running run; "replay" and "operator" record
    replayed rows, moving the run's counts (and only while ``execution`` owns the date), as
    does the job recording into an earlier run (``earlier_run``: rows a night took up again).
    ``publish`` (the job, when it has a failure topic) sends deferred rows on for replay; a
    replay never publishes: Pub/Sub redelivers its own message. ``nik_key`` (the ledger's
    HMAC) lets rows waiting on a field officer be kept (without it they are not).
    """

    store: StateStore
    run_date: str
    execution: str
    source: Source = "job"
    publish: Publish | None = None
    nik_key: Callable[[str], str] | None = None
    earlier_run: bool = False

    def record(self, results: Sequence[RowResult]) -> None:
        """Record ``results`` (blocking: async callers run it in a thread)."""
        deferred = [r for r in results if r.outcome.status is Status.DEFERRED and r.item]
        if deferred and self.publish is not None:
            self.publish([self._message(r) for r in deferred])
        outcomes = [r.outcome for r in results]
        recorded = True
        if self.source == "job" and not self.earlier_run:
            self.store.record_outcomes(self.run_date, outcomes)
        else:
            run = self.store.record_replay(self.run_date, self.execution, outcomes, time.time())
            recorded = run is not None
        self.store.ledger_put([r.ledger for r in results if r.ledger is not None])
        if recorded:
            put, drop = self._waiting(results)
            if put or drop:
                self.store.update_waiting(put, drop)
        for outcome in outcomes:
            if outcome.status not in _UNLOGGED:
                self._log(outcome)

    def _waiting(self, results: Sequence[RowResult]) -> tuple[list[WaitingRow], list[str]]:
        """The rows now waiting on a field officer to keep, and those that waited and no longer
        do (their ``since`` says they waited) to forget."""
        put: list[WaitingRow] = []
        drop: list[str] = []
        if self.nik_key is None:
            return put, drop
        for result in results:
            place, outcome = result.where(), result.outcome
            if place is None:
                continue
            status = outcome.status
            if status in NEEDS_OFFICER or (outcome.since and status in _STILL_WAITING):
                put.append(
                    WaitingRow(
                        sheet_date=place.sheet_date,
                        row=outcome.row,
                        nik_key=self.nik_key(place.nik) if place.nik else "",
                        nik_masked=outcome.nik_masked,
                        status=status.value,
                        since=outcome.since or self.run_date,
                        run_date=self.run_date,
                        execution=self.execution,
                        read_at=place.read_at,
                    )
                )
            elif outcome.since:
                drop.append(waiting_key(place.sheet_date, outcome.row))
        return put, drop

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
