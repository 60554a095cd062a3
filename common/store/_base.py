"""The contract every state backend (SQLite locally, Firestore in production) fulfils."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from common.drift import DriftRow, ReconcileRun
from common.outcomes import RowOutcome, Status
from common.store._model import (
    LedgerEntry,
    LockResult,
    RunState,
    ShardState,
    WaitingRow,
    WorkItem,
)


class StateStore(Protocol):
    """Run lock, manifest, row outcomes, shard claims and progress, and the ledger.

    Every method is synchronous and safe to call from several processes at once; callers in
    async code run them in a thread. Writes of many records are batched by the backend.

    The manifest holds each row's full NIK and number: it expires ``manifest_retention_days``
    after it is written (``RunState.manifest_expires``), by ``clock``; after that it reads as
    absent and the backend deletes it (Firestore's TTL policy; SQLite at the next manifest).
    """

    manifest_retention_days: int
    #: Unix time for the manifest's expiry (``time.time``; tests move it).
    clock: Callable[[], float]

    # -- which date an execution works on -------------------------------------------------
    def bind_execution_date(self, execution: str, run_date: str) -> str:
        """The date ``execution`` works on: the first caller's ``run_date`` wins, for good.

        So a task started, or retried, after midnight works on the same date as task 0.
        """
        ...

    # -- run lock ----------------------------------------------------------------------------
    def acquire_run(
        self, run_date: str, execution: str, task_count: int, lease_seconds: float, now: float
    ) -> LockResult:
        """Take the lock on ``run_date`` for ``execution`` (task 0 only).

        Free, finished by an earlier execution, or held under an expired lease → ACQUIRED (a
        new run: status running, manifest not ready, counts and progress cleared). Held by
        this execution → RESUMED (a retried task 0; a run it had marked failed is running
        again). Held by another execution whose lease is live → HELD.
        """
        ...

    def renew_lease(self, run_date: str, execution: str, lease_seconds: float, now: float) -> bool:
        """Extend the lease; False when another execution has taken the date over."""
        ...

    def get_run(self, run_date: str) -> RunState | None: ...

    def runs_since(self, first: str) -> list[RunState]:
        """Every run dated ``first`` or later, by date (a night chooses its window from them)."""
        ...

    def set_window(
        self,
        run_date: str,
        execution: str,
        first: str,
        caught_up: Sequence[str],
        unsynced: Sequence[str],
    ) -> None:
        """Record the dates ``execution``'s run covers (``first`` .. ``run_date``), those of
        them it catches up, and the dates it leaves unsynced (shown by ``status``, logged)."""
        ...

    def fail_run(self, run_date: str, execution: str, reason: str, now: float) -> int:
        """Mark the run failed: it could not proceed (nothing to replay, rerun the date).

        Returns how often this run has failed, this time included: 1 for its first failure,
        more when a retried task 0 that revived it failed again; 0 when the run is not
        ``execution``'s (nothing recorded). A new run (ACQUIRED) starts again from 0."""
        ...

    def set_report(self, run_date: str, execution: str, report: str) -> None:
        """Record what became of the officers' report tab for the run (shown by ``status``)."""
        ...

    # -- manifest: task 0 writes it once, a shard's holder reads that shard ----------------
    def write_manifest(
        self,
        run_date: str,
        execution: str,
        shards: Mapping[int, Sequence[WorkItem]],
        decided: int,
        counted: Mapping[str, int] | None = None,
    ) -> None:
        """Store each shard's work, then mark the manifest ready (in that order, so a reader
        never sees a half-written manifest). ``decided``: how many rows the sheet alone decided
        (their outcomes are recorded before, by :class:`common.recording.RowRecorder`).

        ``counted``: rows that take no part and get no outcome record each, by status (the
        rows dated outside the window); the run's total and its final counts include them."""
        ...

    def read_shard(self, run_date: str, execution: str, shard: int) -> list[WorkItem] | None:
        """The shard's work, or None while the manifest of ``execution`` is not ready, or once it
        has expired."""
        ...

    # -- row outcomes ------------------------------------------------------------------------
    def record_outcomes(self, run_date: str, outcomes: Sequence[RowOutcome]) -> None:
        """Upsert outcomes by sheet row (a later outcome for a row replaces the earlier)."""
        ...

    def outcomes(
        self, run_date: str, statuses: Collection[Status] | None = None
    ) -> list[RowOutcome]:
        """Every recorded outcome of the date (only those of ``statuses`` when given), by row."""
        ...

    def record_replay(
        self, run_date: str, execution: str, outcomes: Sequence[RowOutcome], now: float
    ) -> RunState | None:
        """Record outcomes of rows of an existing run (a replayed row; rows a later night took
        up again) and, in the same transaction, move the run's counts from each row's previous
        status to the new one. A finished run's status is derived again (``partial`` becomes
        ``succeeded`` when its last deferred row is applied).

        Only while ``execution`` still owns the date: after a rerun the date's report and
        row numbers are the newer read's, which an old replay must not overwrite. Returns
        the run, or None when nothing was recorded (no run, or another execution's)."""
        ...

    # -- reads of the sheet -------------------------------------------------------------------
    def note_read(self, read_at: str, sheet_dates: Sequence[str]) -> None:
        """Remember that the read ``read_at`` re-decided every row dated ``sheet_dates``
        (per date the latest read is kept)."""
        ...

    def last_read(self, sheet_date: str) -> str:
        """The latest read that decided the rows dated ``sheet_date``; "" if none did."""
        ...

    # -- rows waiting on a field officer ----------------------------------------------------
    def waiting_rows(self) -> list[WaitingRow]:
        """Every row waiting on a field officer, across dates (a few hundred at most)."""
        ...

    def update_waiting(self, put: Sequence[WaitingRow] = (), drop: Sequence[str] = ()) -> None:
        """Forget the rows keyed ``drop``, then store ``put`` by key. A stored row from a later
        read of the sheet stays as it is; otherwise the new one replaces it, keeping the
        earlier ``since`` of the two."""
        ...

    # -- shards: leases a task claims, syncs, finishes -------------------------------------
    def claim_shard(
        self,
        run_date: str,
        execution: str,
        shard: int,
        task_index: int,
        lease_seconds: float,
        now: float,
    ) -> bool:
        """Take ``shard`` for task ``task_index`` until ``now + lease_seconds``, in a transaction.

        True when the shard is unfinished and unclaimed, already this task's (a retried task
        resumes it), or its holder's lease has expired (see :meth:`ShardState.claimable_by`);
        False otherwise, and whenever the run is not ``execution``'s running run."""
        ...

    def renew_shard(
        self,
        run_date: str,
        execution: str,
        shard: int,
        task_index: int,
        lease_seconds: float,
        now: float,
    ) -> bool:
        """Extend the task's lease on ``shard``; False when another task has taken it over."""
        ...

    def put_progress(self, run_date: str, progress: ShardState) -> None:
        """Write a shard's progress (total, done, counts, updated_at) and nothing else: the
        claim fields (owner, lease, finished) are changed only by claiming and finishing.
        One record per shard: no hot spot shared by all tasks."""
        ...

    def shard_states(self, run_date: str) -> list[ShardState]:
        """The date's shard records, by shard (a shard nobody has claimed yet has none)."""
        ...

    def finish_shard(
        self, run_date: str, execution: str, shard: int, task_index: int, now: float
    ) -> RunState | None:
        """Mark ``shard`` finished (only while task ``task_index`` holds it), then
        :meth:`close_run`: the call that finishes the last shard closes the run."""
        ...

    def close_run(
        self, run_date: str, execution: str, task_index: int, now: float
    ) -> RunState | None:
        """Once every shard of the running run is finished, give it its final status and
        counts (from the recorded outcomes) and return it, exactly once over all callers;
        None otherwise (shards unfinished, closed already, or another caller closes it)."""
        ...

    # -- ledger ------------------------------------------------------------------------------
    def ledger_get(self, keys: Sequence[str]) -> dict[str, LedgerEntry]: ...

    def ledger_put(self, entries: Sequence[LedgerEntry]) -> None:
        """Write entries, keeping an existing entry from a later read of the sheet
        (``read_at``); an entry of the same read replaces it."""
        ...

    # -- reconciles (common/reconcile.py) -------------------------------------------------------
    def record_reconcile(
        self,
        run: ReconcileRun,
        task_index: int,
        counts: Mapping[str, int],
        rows: Sequence[DriftRow],
        now: float,
    ) -> ReconcileRun | None:
        """Record task ``task_index``'s shard of reconcile ``run.reconcile_id``: its counts by
        class and its drift rows (replacing what an earlier attempt of the task recorded), and
        mark the task finished. The run's window, task count and start are the first caller's.
        The call that finishes the last task returns the run, its counts summed over every
        task, and only that call; the others return None."""
        ...

    def get_reconcile(self, reconcile_id: str) -> ReconcileRun | None:
        """The reconcile with the counts of the tasks finished so far."""
        ...

    def latest_reconcile(self) -> ReconcileRun | None:
        """The reconcile started last, if any."""
        ...

    def drift_rows(self, reconcile_id: str) -> list[DriftRow]:
        """Every drift row the reconcile's tasks recorded, by sheet row."""
        ...

    def close(self) -> None: ...
