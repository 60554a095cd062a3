"""Where a run keeps its state: the lock, the manifest, outcomes, progress and the ledger."""

from __future__ import annotations

from pathlib import Path

from common.store._base import StateStore
from common.store._model import (
    FINISHED,
    LedgerEntry,
    LockResult,
    RunState,
    RunStatus,
    ShardState,
    WaitingRow,
    WorkItem,
    final_status,
    moved_counts,
    read_stamp,
    waiting_key,
)
from common.store._sqlite import SqliteStore

DEFAULT_SQLITE_PATH = Path(".phonesync") / "state.sqlite3"


def firestore_store(
    project: str,
    database: str = "(default)",
    retention_days: int = 400,
    manifest_retention_days: int = 3,
) -> StateStore:
    """The Firestore backend (imported on demand: local runs need no Google libraries)."""
    from common.store._firestore import FirestoreStore

    return FirestoreStore(
        project,
        database,
        retention_days=retention_days,
        manifest_retention_days=manifest_retention_days,
    )


__all__ = [
    "DEFAULT_SQLITE_PATH",
    "FINISHED",
    "LedgerEntry",
    "LockResult",
    "RunState",
    "RunStatus",
    "ShardState",
    "SqliteStore",
    "StateStore",
    "WaitingRow",
    "WorkItem",
    "final_status",
    "firestore_store",
    "moved_counts",
    "read_stamp",
    "waiting_key",
]
