"""The embedded SQLite store fulfils the state-store contract (see tests/store_contract.py)."""

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.store import SqliteStore, StateStore
from tests.store_contract import CHECKS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    backend = SqliteStore(tmp_path / "state.sqlite3")
    yield backend
    backend.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_contract(store: StateStore, check: Callable[[StateStore], None]) -> None:
    check(store)


def test_two_connections_see_one_lock(tmp_path: Path) -> None:
    a, b = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    assert a.acquire_run("2025-09-23", "exec-a", 1, 60, 0) == "acquired"
    assert b.acquire_run("2025-09-23", "exec-b", 1, 60, 1) == "held"


def test_a_state_file_of_the_previous_version_opens_with_its_progress_as_shards(
    tmp_path: Path,
) -> None:
    """Its progress rows had no owner or lease, its runs no failure count: both are added."""
    from jobs.operator import render_status

    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript(
        "CREATE TABLE runs (run_date TEXT PRIMARY KEY, execution TEXT NOT NULL,"
        " status TEXT NOT NULL, task_count INTEGER NOT NULL, started_at REAL NOT NULL,"
        " lease_until REAL NOT NULL, finished_at REAL, manifest_ready INTEGER NOT NULL DEFAULT 0,"
        " counts TEXT NOT NULL DEFAULT '{}', total_rows INTEGER NOT NULL DEFAULT 0,"
        " reason TEXT NOT NULL DEFAULT '');"
        "CREATE TABLE progress (run_date TEXT, task_index INTEGER, execution TEXT NOT NULL,"
        " total INTEGER NOT NULL, done INTEGER NOT NULL, counts TEXT NOT NULL,"
        " updated_at REAL NOT NULL, finished INTEGER NOT NULL, PRIMARY KEY (run_date, task_index));"
        "INSERT INTO runs VALUES ('2025-09-22', 'exec-old', 'succeeded', 1, 0, 60, 5, 1, '{}', 3, '');"
        "INSERT INTO progress VALUES ('2025-09-22', 0, 'exec-old', 3, 3, '{}', 5, 1);"
    )
    old.close()
    store = SqliteStore(tmp_path / "old.db")
    (shard,) = store.shard_states("2025-09-22")
    assert (shard.shard, shard.finished, shard.owner, shard.lease_until) == (0, True, None, 0.0)
    status = render_status(store.get_run("2025-09-22"), [shard], "2025-09-22", bars=False)
    assert "  shard   0  3/3 (100%) done\n" in status + "\n"
    store.acquire_run("2025-09-23", "exec-new", 1, 60, 10)
    assert store.fail_run("2025-09-23", "exec-new", "sheet unreadable", 11) == 1
    store.close()


def test_an_expired_manifest_leaves_the_file_when_the_next_is_written(tmp_path: Path) -> None:
    """Its full NIKs and numbers are deleted, not only hidden; the run's record stays."""
    from tests.store_contract import LEASE, T0, item, write_manifest

    now = [1_000_000.0]
    store = SqliteStore(tmp_path / "s.db", manifest_retention_days=2, clock=lambda: now[0])
    store.acquire_run("2025-09-22", "exec-22", 1, LEASE, T0)
    write_manifest(store, "2025-09-22", "exec-22", {0: [item(2)]}, [])
    assert store.get_run("2025-09-22").manifest_expires == now[0] + 2 * 86400  # type: ignore[union-attr]
    now[0] += 2 * 86400
    store.acquire_run("2025-09-24", "exec-24", 1, LEASE, T0)
    write_manifest(store, "2025-09-24", "exec-24", {0: [item(3)]}, [])
    kept = store._query("SELECT run_date, items FROM shards")
    assert [(d, "3171044203920002" in items) for d, items in kept] == [("2025-09-24", False)]
    assert store.get_run("2025-09-22") is not None
    store.close()


def test_the_manifest_retention_setting_reaches_the_store(tmp_path: Path) -> None:
    from common.config import load_settings
    from common.runtime import open_store

    env = {"STATE_PATH": str(tmp_path / "s.db"), "MANIFEST_RETENTION_DAYS": "5"}
    store = open_store(load_settings(env, role="store"))
    assert isinstance(store, SqliteStore) and store.manifest_retention_days == 5
    store.close()
