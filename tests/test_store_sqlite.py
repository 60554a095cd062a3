"""The embedded SQLite store fulfils the state-store contract (see tests/store_contract.py)."""

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
