"""Opening the state store a command was pointed at (SQLite locally, Firestore in production)."""

from __future__ import annotations

from pathlib import Path

from common.store import SqliteStore, StateStore


def open_state(backend: str, path: Path, project: str | None) -> StateStore:
    if backend == "firestore":
        from common.store import firestore_store

        return firestore_store(str(project))
    return SqliteStore(path)
