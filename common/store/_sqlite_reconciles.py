"""Reconciles in the SQLite store: a run per reconcile, a record per task, the drift rows.

A mixin of :class:`~common.store.SqliteStore` (its connection, lock and transactions), kept
apart from the nightly run's tables.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from common.drift import DriftClass, DriftRow, ReconcileRun, class_counts

SCHEMA = """
CREATE TABLE IF NOT EXISTS reconciles (
  reconcile_id TEXT PRIMARY KEY, since TEXT NOT NULL, until TEXT NOT NULL,
  task_count INTEGER NOT NULL, started_at REAL NOT NULL, repair INTEGER NOT NULL,
  finished_at REAL);
CREATE TABLE IF NOT EXISTS reconcile_tasks (
  reconcile_id TEXT, task_index INTEGER, counts TEXT NOT NULL, finished_at REAL NOT NULL,
  PRIMARY KEY (reconcile_id, task_index));
CREATE TABLE IF NOT EXISTS drift (
  reconcile_id TEXT, row INTEGER, task_index INTEGER NOT NULL, nik_masked TEXT NOT NULL,
  class TEXT NOT NULL, sheet_date TEXT NOT NULL, patient_id TEXT, reason TEXT NOT NULL,
  repair TEXT NOT NULL, PRIMARY KEY (reconcile_id, row));
"""

_RUN_COLUMNS = "reconcile_id, since, until, task_count, started_at, repair, finished_at"


class SqliteReconciles:
    if TYPE_CHECKING:  # provided by SqliteStore

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def record_reconcile(
        self,
        run: ReconcileRun,
        task_index: int,
        counts: Mapping[str, int],
        rows: Sequence[DriftRow],
        now: float,
    ) -> ReconcileRun | None:
        rid = run.reconcile_id
        with self._write() as db:
            db.execute(
                f"INSERT OR IGNORE INTO reconciles ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (rid, run.since, run.until, run.task_count, run.started_at, int(run.repair)),
            )
            db.execute(
                "DELETE FROM drift WHERE reconcile_id = ? AND task_index = ?", (rid, task_index)
            )
            db.executemany(
                "INSERT OR REPLACE INTO drift (reconcile_id, row, task_index, nik_masked, class,"
                " sheet_date, patient_id, reason, repair) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        rid,
                        r.row,
                        task_index,
                        r.nik_masked,
                        r.drift.value,
                        r.sheet_date,
                        r.patient_id,
                        r.reason,
                        r.repair,
                    )
                    for r in rows
                ],
            )
            db.execute(
                "INSERT OR REPLACE INTO reconcile_tasks (reconcile_id, task_index, counts,"
                " finished_at) VALUES (?, ?, ?, ?)",
                (rid, task_index, json.dumps(dict(counts)), now),
            )
            stored = self._run(db, rid)
            assert stored is not None
            if stored.finished_at is not None or stored.tasks_finished < stored.task_count:
                return None
            db.execute("UPDATE reconciles SET finished_at = ? WHERE reconcile_id = ?", (now, rid))
            stored.finished_at = now
            return stored

    def get_reconcile(self, reconcile_id: str) -> ReconcileRun | None:
        with self._write() as db:
            return self._run(db, reconcile_id)

    def latest_reconcile(self) -> ReconcileRun | None:
        found = self._query(
            "SELECT reconcile_id FROM reconciles ORDER BY started_at DESC, reconcile_id DESC"
            " LIMIT 1"
        )
        return self.get_reconcile(found[0][0]) if found else None

    def drift_rows(self, reconcile_id: str) -> list[DriftRow]:
        rows = self._query(
            "SELECT row, nik_masked, class, sheet_date, patient_id, reason, repair FROM drift"
            " WHERE reconcile_id = ? ORDER BY row",
            (reconcile_id,),
        )
        return [DriftRow(r[0], r[1], DriftClass(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    @staticmethod
    def _run(db: sqlite3.Connection, reconcile_id: str) -> ReconcileRun | None:
        found = db.execute(
            f"SELECT {_RUN_COLUMNS} FROM reconciles WHERE reconcile_id = ?", (reconcile_id,)
        ).fetchone()
        if found is None:
            return None
        tasks = db.execute(
            "SELECT counts FROM reconcile_tasks WHERE reconcile_id = ?", (reconcile_id,)
        ).fetchall()
        counts = class_counts(())
        for (task_counts,) in tasks:
            for name, n in json.loads(task_counts).items():
                counts[name] = counts.get(name, 0) + n
        return ReconcileRun(
            reconcile_id=found[0],
            since=found[1],
            until=found[2],
            task_count=found[3],
            started_at=found[4],
            repair=bool(found[5]),
            finished_at=found[6],
            tasks_finished=len(tasks),
            counts=counts,
        )
