"""The embedded state store for local runs: one SQLite file shared by the worker processes.

The manifest (``shards``: full NIKs and numbers) expires ``manifest_retention_days`` after it is
written (``runs.manifest_expires``): it reads as absent from then on, and each new manifest
deletes the expired ones from the file. Nothing else expires here (a local state file is the
operator's to delete).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common.outcomes import RowOutcome, Status, summarize
from common.store._model import (
    LedgerEntry,
    LockResult,
    RunState,
    RunStatus,
    ShardState,
    WaitingRow,
    WorkItem,
    final_status,
    moved_counts,
)
from common.store._sqlite_reconciles import SCHEMA as RECONCILE_SCHEMA
from common.store._sqlite_reconciles import SqliteReconciles

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (execution TEXT PRIMARY KEY, run_date TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  run_date TEXT PRIMARY KEY, execution TEXT NOT NULL, status TEXT NOT NULL,
  task_count INTEGER NOT NULL, started_at REAL NOT NULL, lease_until REAL NOT NULL,
  finished_at REAL, manifest_ready INTEGER NOT NULL DEFAULT 0, counts TEXT NOT NULL DEFAULT '{}',
  total_rows INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
  counted TEXT NOT NULL DEFAULT '{}', failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS shards (
  run_date TEXT, execution TEXT, task_index INTEGER, items TEXT NOT NULL,
  PRIMARY KEY (run_date, execution, task_index));
CREATE TABLE IF NOT EXISTS outcomes (
  run_date TEXT, row INTEGER, status TEXT NOT NULL, reason TEXT NOT NULL,
  patient_id TEXT, nik_masked TEXT NOT NULL, warning TEXT NOT NULL,
  PRIMARY KEY (run_date, row));
CREATE TABLE IF NOT EXISTS progress (
  run_date TEXT, task_index INTEGER, execution TEXT NOT NULL, total INTEGER NOT NULL,
  done INTEGER NOT NULL, counts TEXT NOT NULL, updated_at REAL NOT NULL, finished INTEGER NOT NULL,
  owner INTEGER, lease_until REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (run_date, task_index));
CREATE TABLE IF NOT EXISTS ledger (
  key TEXT PRIMARY KEY, phone_hash TEXT NOT NULL, run_date TEXT NOT NULL, row INTEGER NOT NULL,
  applied_at TEXT NOT NULL, read_at TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS sheet_reads (sheet_date TEXT PRIMARY KEY, read_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS waiting (
  key TEXT PRIMARY KEY, sheet_date TEXT NOT NULL, row INTEGER NOT NULL, nik_key TEXT NOT NULL,
  nik_masked TEXT NOT NULL, status TEXT NOT NULL, since TEXT NOT NULL, run_date TEXT NOT NULL,
  execution TEXT NOT NULL, read_at TEXT NOT NULL);
"""
#: Columns added since a table was first created: (table, column, definition).
_ADDED_COLUMNS = (
    ("ledger", "read_at", "TEXT NOT NULL DEFAULT ''"),
    ("runs", "report", "TEXT NOT NULL DEFAULT ''"),  # the officers' report tab's fate
    ("runs", "counted", "TEXT NOT NULL DEFAULT '{}'"),
    ("runs", "failures", "INTEGER NOT NULL DEFAULT 0"),  # how often task 0 failed this run
    # progress rows became shard claims; their task_index column holds the shard's index
    ("progress", "owner", "INTEGER"),
    ("progress", "lease_until", "REAL NOT NULL DEFAULT 0"),
    ("ledger", "registry_version", "TEXT NOT NULL DEFAULT ''"),
    ("ledger", "registry_updated", "TEXT NOT NULL DEFAULT ''"),
    ("runs", "window", "TEXT NOT NULL DEFAULT '{}'"),  # the dates it covers (set_window)
    ("outcomes", "since", "TEXT NOT NULL DEFAULT ''"),
    ("runs", "manifest_expires", "REAL"),  # NULL: no manifest yet (or one written before)
)
_RUN_COLUMNS = (
    "run_date, execution, status, task_count, started_at, lease_until, finished_at,"
    " manifest_ready, counts, total_rows, reason, report, window, manifest_expires"
)


def _item(item: WorkItem) -> dict[str, Any]:
    """A manifest item as stored: ``since`` only where a row waited (most do not)."""
    data = asdict(item)
    if not item.since:
        del data["since"]
    return data


def _run_state(row: Sequence[Any]) -> RunState:
    window = json.loads(row[12])
    return RunState(
        run_date=row[0],
        execution=row[1],
        status=RunStatus(row[2]),
        task_count=row[3],
        started_at=row[4],
        lease_until=row[5],
        finished_at=row[6],
        manifest_ready=bool(row[7]),
        counts=json.loads(row[8]),
        total_rows=row[9],
        reason=row[10],
        report=row[11],
        window_first=window.get("first", ""),
        caught_up=window.get("caught_up", []),
        unsynced=window.get("unsynced", []),
        manifest_expires=row[13],
    )


_UPSERT_OUTCOME = (
    "INSERT OR REPLACE INTO outcomes (run_date, row, status, reason, patient_id, nik_masked,"
    " warning, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _outcome_row(run_date: str, o: RowOutcome) -> tuple[object, ...]:
    return (
        run_date,
        o.row,
        o.status.value,
        o.reason,
        o.patient_id,
        o.nik_masked,
        o.warning,
        o.since,
    )


class SqliteStore(SqliteReconciles):
    """:class:`~common.store.StateStore` on one SQLite file (WAL; safe across processes)."""

    def __init__(
        self,
        path: str | Path,
        *,
        manifest_retention_days: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.manifest_retention_days = manifest_retention_days
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Async callers use the store from worker threads; one lock serialises the connection.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA + RECONCILE_SCHEMA)
        for table, column, definition in _ADDED_COLUMNS:  # a state file of an older version
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A transaction that takes the write lock up front, so read-then-write is atomic."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def bind_execution_date(self, execution: str, run_date: str) -> str:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO executions (execution, run_date) VALUES (?, ?)",
                (execution, run_date),
            )
            (bound,) = db.execute(
                "SELECT run_date FROM executions WHERE execution = ?", (execution,)
            ).fetchone()
        return str(bound)

    def acquire_run(
        self, run_date: str, execution: str, task_count: int, lease_seconds: float, now: float
    ) -> LockResult:
        with self._write() as db:
            current = db.execute(
                "SELECT execution, status, lease_until FROM runs WHERE run_date = ?", (run_date,)
            ).fetchone()
            if current is not None:
                owner, status, lease_until = current
                if owner == execution:
                    db.execute(
                        "UPDATE runs SET lease_until = ?,"
                        " status = CASE status WHEN 'failed' THEN 'running' ELSE status END,"
                        " finished_at = CASE status WHEN 'failed' THEN NULL ELSE finished_at END"
                        " WHERE run_date = ?",
                        (now + lease_seconds, run_date),
                    )
                    return LockResult.RESUMED
                if status == RunStatus.RUNNING and lease_until > now:
                    return LockResult.HELD
            db.execute(
                "INSERT OR REPLACE INTO runs (run_date, execution, status, task_count, started_at,"
                " lease_until) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_date,
                    execution,
                    RunStatus.RUNNING.value,
                    task_count,
                    now,
                    now + lease_seconds,
                ),
            )
            db.execute("DELETE FROM progress WHERE run_date = ?", (run_date,))
            db.execute("DELETE FROM outcomes WHERE run_date = ?", (run_date,))
            db.execute("DELETE FROM shards WHERE run_date = ?", (run_date,))
            return LockResult.ACQUIRED

    def renew_lease(self, run_date: str, execution: str, lease_seconds: float, now: float) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET lease_until = MAX(lease_until, ?) WHERE run_date = ? AND execution = ?",
                (now + lease_seconds, run_date, execution),
            )
            return cursor.rowcount == 1

    def get_run(self, run_date: str) -> RunState | None:
        found = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_date = ?", (run_date,))
        return _run_state(found[0]) if found else None

    def runs_since(self, first: str) -> list[RunState]:
        found = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_date >= ? ORDER BY run_date", (first,)
        )
        return [_run_state(row) for row in found]

    def set_window(
        self,
        run_date: str,
        execution: str,
        first: str,
        caught_up: Sequence[str],
        unsynced: Sequence[str],
    ) -> None:
        window = {"first": first, "caught_up": list(caught_up), "unsynced": list(unsynced)}
        with self._write() as db:
            db.execute(
                "UPDATE runs SET window = ? WHERE run_date = ? AND execution = ?",
                (json.dumps(window), run_date, execution),
            )

    def fail_run(self, run_date: str, execution: str, reason: str, now: float) -> int:
        with self._write() as db:
            failed = db.execute(
                "UPDATE runs SET status = ?, reason = ?, finished_at = ?, failures = failures + 1"
                " WHERE run_date = ? AND execution = ? RETURNING failures",
                (RunStatus.FAILED.value, reason, now, run_date, execution),
            ).fetchone()
        return int(failed[0]) if failed else 0

    def set_report(self, run_date: str, execution: str, report: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET report = ? WHERE run_date = ? AND execution = ?",
                (report, run_date, execution),
            )

    def write_manifest(
        self,
        run_date: str,
        execution: str,
        shards: Mapping[int, Sequence[WorkItem]],
        decided: int,
        counted: Mapping[str, int] | None = None,
    ) -> None:
        counted = dict(counted or {})
        total = decided + sum(len(items) for items in shards.values()) + sum(counted.values())
        now = self.clock()
        with self._write() as db:
            # Manifests past their retention leave the file (full NIKs and numbers).
            db.execute(
                "DELETE FROM shards WHERE (run_date, execution) IN (SELECT run_date, execution"
                " FROM runs WHERE manifest_expires <= ?)",
                (now,),
            )
            db.executemany(
                "INSERT OR REPLACE INTO shards (run_date, execution, task_index, items)"
                " VALUES (?, ?, ?, ?)",
                [
                    (run_date, execution, index, json.dumps([_item(i) for i in items]))
                    for index, items in shards.items()
                ],
            )
            db.execute(
                "UPDATE runs SET manifest_ready = 1, total_rows = ?, counted = ?,"
                " manifest_expires = ? WHERE run_date = ? AND execution = ?",
                (
                    total,
                    json.dumps(counted),
                    now + self.manifest_retention_days * 86400,
                    run_date,
                    execution,
                ),
            )

    def read_shard(self, run_date: str, execution: str, shard: int) -> list[WorkItem] | None:
        ready = self._query(
            "SELECT manifest_ready, manifest_expires FROM runs WHERE run_date = ? AND execution = ?",
            (run_date, execution),
        )
        if not ready or not ready[0][0]:
            return None
        if ready[0][1] is not None and ready[0][1] <= self.clock():
            return None  # expired (deleted by the next manifest written)
        rows = self._query(
            "SELECT items FROM shards WHERE run_date = ? AND execution = ? AND task_index = ?",
            (run_date, execution, shard),
        )
        return [WorkItem(**item) for item in json.loads(rows[0][0])] if rows else []

    def record_outcomes(self, run_date: str, outcomes: Sequence[RowOutcome]) -> None:
        if not outcomes:
            return
        with self._write() as db:
            db.executemany(_UPSERT_OUTCOME, [_outcome_row(run_date, o) for o in outcomes])

    def outcomes(
        self, run_date: str, statuses: Collection[Status] | None = None
    ) -> list[RowOutcome]:
        wanted = [] if statuses is None else [s.value for s in statuses]
        where = f" AND status IN ({','.join('?' * len(wanted))})" if statuses is not None else ""
        rows = self._query(
            "SELECT row, status, reason, patient_id, nik_masked, warning, since FROM outcomes"
            f" WHERE run_date = ?{where} ORDER BY row",
            (run_date, *wanted),
        )
        return [RowOutcome(r[0], Status(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def record_replay(
        self, run_date: str, execution: str, outcomes: Sequence[RowOutcome], now: float
    ) -> RunState | None:
        with self._write() as db:
            run = db.execute(
                "SELECT counts, finished_at FROM runs WHERE run_date = ? AND execution = ?",
                (run_date, execution),
            ).fetchone()
            if run is None:
                return None
            counts = json.loads(run[0])
            for outcome in outcomes:
                previous = db.execute(
                    "SELECT status FROM outcomes WHERE run_date = ? AND row = ?",
                    (run_date, outcome.row),
                ).fetchone()
                counts = moved_counts(
                    counts, previous[0] if previous else None, outcome.status.value
                )
                db.execute(_UPSERT_OUTCOME, _outcome_row(run_date, outcome))
            if run[1] is None:
                db.execute(
                    "UPDATE runs SET counts = ? WHERE run_date = ?", (json.dumps(counts), run_date)
                )
            else:
                db.execute(
                    "UPDATE runs SET counts = ?, status = ? WHERE run_date = ?",
                    (json.dumps(counts), final_status(counts).value, run_date),
                )
        return self.get_run(run_date)

    def claim_shard(
        self,
        run_date: str,
        execution: str,
        shard: int,
        task_index: int,
        lease_seconds: float,
        now: float,
    ) -> bool:
        with self._write() as db:
            run = db.execute(
                "SELECT status FROM runs WHERE run_date = ? AND execution = ?",
                (run_date, execution),
            ).fetchone()
            if run is None or run[0] != RunStatus.RUNNING:
                return False
            current = self._shard_state(db, run_date, shard)
            if current is not None and current.execution == execution:
                if not current.claimable_by(task_index, now):
                    return False
                db.execute(
                    "UPDATE progress SET owner = ?, lease_until = ?"
                    " WHERE run_date = ? AND task_index = ?",
                    (task_index, now + lease_seconds, run_date, shard),
                )
                return True
            db.execute(  # unclaimed (a record of another execution counts as none)
                "INSERT OR REPLACE INTO progress (run_date, task_index, execution, total, done,"
                " counts, updated_at, finished, owner, lease_until)"
                " VALUES (?, ?, ?, 0, 0, '{}', ?, 0, ?, ?)",
                (run_date, shard, execution, now, task_index, now + lease_seconds),
            )
            return True

    def renew_shard(
        self,
        run_date: str,
        execution: str,
        shard: int,
        task_index: int,
        lease_seconds: float,
        now: float,
    ) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE progress SET lease_until = MAX(lease_until, ?)"
                " WHERE run_date = ? AND task_index = ? AND execution = ? AND owner = ?",
                (now + lease_seconds, run_date, shard, execution, task_index),
            )
            return cursor.rowcount == 1

    def put_progress(self, run_date: str, progress: ShardState) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO progress (run_date, task_index, execution, total, done, counts,"
                " updated_at, finished) VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
                " ON CONFLICT (run_date, task_index) DO UPDATE SET total = excluded.total,"
                " done = excluded.done, counts = excluded.counts, updated_at = excluded.updated_at",
                (
                    run_date,
                    progress.shard,
                    progress.execution,
                    progress.total,
                    progress.done,
                    json.dumps(progress.counts),
                    progress.updated_at,
                ),
            )

    _SHARD_COLUMNS = (
        "task_index, execution, total, done, counts, updated_at, finished, owner, lease_until"
    )

    @staticmethod
    def _shard(row: Sequence[Any]) -> ShardState:
        return ShardState(
            shard=row[0],
            execution=row[1],
            total=row[2],
            done=row[3],
            counts=json.loads(row[4]),
            updated_at=row[5],
            finished=bool(row[6]),
            owner=row[7],
            lease_until=row[8],
        )

    def _shard_state(self, db: sqlite3.Connection, run_date: str, shard: int) -> ShardState | None:
        row = db.execute(
            f"SELECT {self._SHARD_COLUMNS} FROM progress WHERE run_date = ? AND task_index = ?",
            (run_date, shard),
        ).fetchone()
        return self._shard(row) if row else None

    def shard_states(self, run_date: str) -> list[ShardState]:
        rows = self._query(
            f"SELECT {self._SHARD_COLUMNS} FROM progress WHERE run_date = ? ORDER BY task_index",
            (run_date,),
        )
        return [self._shard(r) for r in rows]

    def finish_shard(
        self, run_date: str, execution: str, shard: int, task_index: int, now: float
    ) -> RunState | None:
        with self._write() as db:
            db.execute(
                "UPDATE progress SET finished = 1, updated_at = ?"
                " WHERE run_date = ? AND task_index = ? AND execution = ? AND owner = ?",
                (now, run_date, shard, execution, task_index),
            )
            closed = self._close(db, run_date, execution, now)
        return self.get_run(run_date) if closed else None

    def close_run(
        self, run_date: str, execution: str, task_index: int, now: float
    ) -> RunState | None:
        with self._write() as db:
            closed = self._close(db, run_date, execution, now)
        return self.get_run(run_date) if closed else None

    def _close(self, db: sqlite3.Connection, run_date: str, execution: str, now: float) -> bool:
        """Close the running run if every shard is finished (inside the caller's transaction,
        which holds the write lock: exactly one caller sees it running and closes it)."""
        run = db.execute(
            "SELECT task_count, status, counted FROM runs WHERE run_date = ? AND execution = ?",
            (run_date, execution),
        ).fetchone()
        if run is None or run[1] != RunStatus.RUNNING:
            return False
        (finished,) = db.execute(
            "SELECT COUNT(*) FROM progress WHERE run_date = ? AND execution = ? AND finished = 1",
            (run_date, execution),
        ).fetchone()
        if finished < run[0]:
            return False
        counts = summarize(self.outcomes(run_date), json.loads(run[2]))
        db.execute(
            "UPDATE runs SET status = ?, counts = ?, finished_at = ? WHERE run_date = ?",
            (final_status(counts).value, json.dumps(counts), now, run_date),
        )
        return True

    def ledger_get(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        found: dict[str, LedgerEntry] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                "SELECT key, phone_hash, run_date, row, applied_at, read_at, registry_version,"
                " registry_updated FROM ledger"
                f" WHERE key IN ({marks})",
                chunk,
            ):
                found[row[0]] = LedgerEntry(*row)
        return found

    def ledger_put(self, entries: Sequence[LedgerEntry]) -> None:
        if not entries:
            return
        with self._write() as db:
            db.executemany(
                "INSERT INTO ledger (key, phone_hash, run_date, row, applied_at, read_at,"
                " registry_version, registry_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET phone_hash = excluded.phone_hash,"
                " run_date = excluded.run_date, row = excluded.row,"
                " applied_at = excluded.applied_at, read_at = excluded.read_at,"
                " registry_version = excluded.registry_version,"
                " registry_updated = excluded.registry_updated"
                " WHERE excluded.read_at >= ledger.read_at",
                [
                    (
                        e.key,
                        e.phone_hash,
                        e.run_date,
                        e.row,
                        e.applied_at,
                        e.read_at,
                        e.registry_version,
                        e.registry_updated,
                    )
                    for e in entries
                ],
            )

    def note_read(self, read_at: str, sheet_dates: Sequence[str]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO sheet_reads (sheet_date, read_at) VALUES (?, ?)"
                " ON CONFLICT (sheet_date) DO UPDATE SET read_at = excluded.read_at"
                " WHERE excluded.read_at > sheet_reads.read_at",
                [(day, read_at) for day in sheet_dates],
            )

    def last_read(self, sheet_date: str) -> str:
        found = self._query("SELECT read_at FROM sheet_reads WHERE sheet_date = ?", (sheet_date,))
        return str(found[0][0]) if found else ""

    def waiting_rows(self) -> list[WaitingRow]:
        rows = self._query(
            "SELECT sheet_date, row, nik_key, nik_masked, status, since, run_date, execution,"
            " read_at FROM waiting ORDER BY key"
        )
        return [WaitingRow(*r) for r in rows]

    def update_waiting(self, put: Sequence[WaitingRow] = (), drop: Sequence[str] = ()) -> None:
        if not put and not drop:
            return
        with self._write() as db:
            db.executemany("DELETE FROM waiting WHERE key = ?", [(key,) for key in drop])
            db.executemany(
                "INSERT INTO waiting (key, sheet_date, row, nik_key, nik_masked, status, since,"
                " run_date, execution, read_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET sheet_date = excluded.sheet_date,"
                " row = excluded.row, nik_key = excluded.nik_key,"
                " nik_masked = excluded.nik_masked, status = excluded.status,"
                " since = MIN(waiting.since, excluded.since), run_date = excluded.run_date,"
                " execution = excluded.execution, read_at = excluded.read_at"
                " WHERE excluded.read_at >= waiting.read_at",
                [
                    (
                        w.key,
                        w.sheet_date,
                        w.row,
                        w.nik_key,
                        w.nik_masked,
                        w.status,
                        w.since,
                        w.run_date,
                        w.execution,
                        w.read_at,
                    )
                    for w in put
                ],
            )

    def close(self) -> None:
        self._db.close()
