"""The Firestore store fulfils the state-store contract, on the real emulator."""

import threading
from collections.abc import Callable, Iterator

import pytest

from common.outcomes import RowOutcome, Status
from common.store import LockResult, StateStore, WorkItem
from common.store._firestore import CHUNK, FirestoreStore
from tests.store_contract import CHECKS, DATE, LEASE, T0


@pytest.fixture
def store(gcp_project: str) -> Iterator[FirestoreStore]:
    backend = FirestoreStore(gcp_project)
    yield backend
    backend.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_contract(store: StateStore, check: Callable[[StateStore], None]) -> None:
    check(store)


def race(workers: list[Callable[[], object]]) -> list[object]:
    results: list[object] = [None] * len(workers)
    barrier = threading.Barrier(len(workers))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = workers[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_executions_racing_for_a_date_one_wins(gcp_project: str) -> None:
    stores = [FirestoreStore(gcp_project) for _ in range(4)]
    results = race(
        [
            lambda s=s, i=i: s.acquire_run(DATE, f"exec-{i}", 1, LEASE, T0)
            for i, s in enumerate(stores)
        ]
    )
    assert sorted(results) == sorted([LockResult.ACQUIRED] + [LockResult.HELD] * 3)
    for s in stores:
        s.close()


def test_concurrent_finishes_close_the_run_once(gcp_project: str) -> None:
    stores = [FirestoreStore(gcp_project) for _ in range(4)]
    stores[0].acquire_run(DATE, "exec-a", 4, LEASE, T0)
    stores[0].write_manifest(
        DATE, "exec-a", {i: [] for i in range(4)}, [RowOutcome(2, Status.SUPERSEDED)]
    )
    results = race(
        [lambda s=s, i=i: s.finish_task(DATE, "exec-a", i, T0 + 1) for i, s in enumerate(stores)]
    )
    closed = [r for r in results if r is not None]
    assert len(closed) == 1
    run = stores[0].get_run(DATE)
    assert run is not None and run.status == "succeeded" and run.counts == {"superseded": 1}
    for s in stores:
        s.close()


def test_a_large_shard_is_split_into_chunks(store: FirestoreStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    items = [
        WorkItem(row=r, date=DATE, nik=f"{r:016d}", phone="+6281234567890")
        for r in range(2, 2 + 3 * CHUNK + 5)
    ]
    store.write_manifest(DATE, "exec-a", {0: items}, [])
    ids = sorted(d.id for d in store._sub(DATE, "manifest").list_documents())
    assert ids == ["exec-a-0000-0000", "exec-a-0000-0001", "exec-a-0000-0002", "exec-a-0000-0003"]
    assert store.read_shard(DATE, "exec-a", 0) == items


def test_documents_carry_expire_at_for_the_ttl_policy(store: FirestoreStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    store.record_outcomes(DATE, [RowOutcome(2, Status.UPDATED)])
    assert store._run(DATE).get().get("expire_at") is not None
    assert store._sub(DATE, "rows").document("0000002").get().get("expire_at") is not None
