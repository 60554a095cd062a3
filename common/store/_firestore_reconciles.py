"""Reconciles in the Firestore store.

Layout (every document carries ``expire_at`` for the TTL policy):

- ``reconciles/{id}``: the window, task count, start, and ``finished_at`` once the last task
  recorded its shard (set in a transaction on this document alone: exactly one task closes it);
- ``reconciles/{id}/tasks/{task}``: a task's counts by class, written when it finished;
- ``reconciles/{id}/drift/{row:07d}``: one drift row (masked NIK), with the task that found it.

A task's records are replaced whole by a retry of the same task: its old drift rows are deleted
first, then the new ones and its task document written (bulk writes, checked).

A mixin of :class:`~common.store._firestore.FirestoreStore` (its client, bulk writes, retention
and transactions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from common.drift import DriftClass, DriftRow, ReconcileRun, class_counts
from common.store._transactions import transactional


class FirestoreReconciles:
    if TYPE_CHECKING:  # provided by FirestoreStore
        db: Any | firestore.Client  # as FirestoreStore.__init__ sets it

        def _bulk(self, ops: Iterable[tuple[Any, dict[str, Any] | None]]) -> None: ...

        def _expire(self) -> datetime: ...

        def _transaction(self) -> Any: ...

    def _reconcile(self, reconcile_id: str) -> Any:
        return self.db.collection("reconciles").document(reconcile_id)

    def record_reconcile(
        self,
        run: ReconcileRun,
        task_index: int,
        counts: Mapping[str, int],
        rows: Sequence[DriftRow],
        now: float,
    ) -> ReconcileRun | None:
        ref = self._reconcile(run.reconcile_id)
        expire = self._expire()
        # Another task, or an earlier attempt of this one, may have created it: the first wins.
        with contextlib.suppress(gexc.AlreadyExists):
            ref.create(
                {
                    "since": run.since,
                    "until": run.until,
                    "task_count": run.task_count,
                    "started_at": run.started_at,
                    "repair": run.repair,
                    "finished_at": None,
                    "expire_at": expire,
                }
            )
        drift = ref.collection("drift")
        earlier = [
            snap.reference
            for snap in drift.where(filter=firestore.FieldFilter("task", "==", task_index)).stream()
        ]
        self._bulk((old, None) for old in earlier)
        self._bulk(
            (
                drift.document(f"{r.row:07d}"),
                {
                    "row": r.row,
                    "task": task_index,
                    "nik_masked": r.nik_masked,
                    "class": r.drift.value,
                    "sheet_date": r.sheet_date,
                    "patient_id": r.patient_id,
                    "reason": r.reason,
                    "repair": r.repair,
                    "expire_at": expire,
                },
            )
            for r in rows
        )
        ref.collection("tasks").document(str(task_index)).set(
            {"counts": dict(counts), "finished_at": now, "expire_at": expire}
        )
        current = self.get_reconcile(run.reconcile_id)
        if current is None or current.tasks_finished < current.task_count:
            return None

        @transactional
        def close(transaction: Any) -> bool:
            snap = ref.get(transaction=transaction)
            if not snap.exists or snap.get("finished_at") is not None:
                return False
            transaction.update(ref, {"finished_at": now})
            return True

        if not close(self._transaction()):
            return None
        current.finished_at = now
        return current

    def get_reconcile(self, reconcile_id: str) -> ReconcileRun | None:
        ref = self._reconcile(reconcile_id)
        snap = ref.get()
        if not snap.exists:
            return None
        data = snap.to_dict() or {}
        counts = class_counts(())
        finished = 0
        for task in ref.collection("tasks").stream():
            finished += 1
            for name, n in (task.to_dict() or {}).get("counts", {}).items():
                counts[name] = counts.get(name, 0) + int(n)
        return ReconcileRun(
            reconcile_id=reconcile_id,
            since=data["since"],
            until=data["until"],
            task_count=int(data["task_count"]),
            started_at=float(data["started_at"]),
            repair=bool(data.get("repair")),
            finished_at=data.get("finished_at"),
            tasks_finished=finished,
            counts=counts,
        )

    def latest_reconcile(self) -> ReconcileRun | None:
        query = (
            self.db.collection("reconciles")
            .order_by("started_at", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        for snap in query.stream():
            return self.get_reconcile(snap.id)
        return None

    def drift_rows(self, reconcile_id: str) -> list[DriftRow]:
        rows = [
            DriftRow(
                row=d["row"],
                nik_masked=d["nik_masked"],
                drift=DriftClass(d["class"]),
                sheet_date=d["sheet_date"],
                patient_id=d.get("patient_id"),
                reason=d.get("reason", ""),
                repair=d.get("repair", ""),
            )
            for d in (
                snap.to_dict() or {}
                for snap in self._reconcile(reconcile_id).collection("drift").stream()
            )
        ]
        return sorted(rows, key=lambda r: r.row)
