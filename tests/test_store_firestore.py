"""The Firestore store fulfils the state-store contract, on the real emulator."""

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from common.outcomes import RowOutcome, Status
from common.store import LockResult, RunStatus, StateStore, WorkItem
from common.store._firestore import CHUNK, FirestoreStore, StoreWriteError
from tests.emulators import EmulatorProject
from tests.store_contract import CHECKS, DATE, LEASE, T0, finish, item, write_manifest


@pytest.fixture
def project(firestore_emulator: EmulatorProject) -> str:
    return firestore_emulator.project


@pytest.fixture
def store(project: str) -> Iterator[FirestoreStore]:
    backend = FirestoreStore(project)
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


def test_two_executions_racing_for_a_date_one_wins(project: str) -> None:
    stores = [FirestoreStore(project) for _ in range(4)]
    results = race(
        [
            lambda s=s, i=i: s.acquire_run(DATE, f"exec-{i}", 1, LEASE, T0)
            for i, s in enumerate(stores)
        ]
    )
    assert sorted(results) == sorted([LockResult.ACQUIRED] + [LockResult.HELD] * 3)
    for s in stores:
        s.close()


@pytest.mark.parametrize("pollers", [0, 4], ids=["finishers", "finishers-and-pollers"])
def test_concurrent_finishes_close_the_run_once(project: str, pollers: int) -> None:
    """Four tasks finish their shards at once; with pollers, four more tasks (done with their
    own work, waiting for the run to end) call close_run at the same moment."""
    stores = [FirestoreStore(project) for _ in range(4 + pollers)]
    stores[0].acquire_run(DATE, "exec-a", 4, LEASE, T0)
    write_manifest(
        stores[0], DATE, "exec-a", {i: [] for i in range(4)}, [RowOutcome(2, Status.SUPERSEDED)]
    )
    for i in range(4):
        assert stores[0].claim_shard(DATE, "exec-a", i, i, LEASE, T0)
    results = race(
        [
            lambda s=s, i=i: s.finish_shard(DATE, "exec-a", i, i, T0 + 1)
            for i, s in enumerate(stores[:4])
        ]
        + [
            lambda s=s, i=i: s.close_run(DATE, "exec-a", 4 + i, T0 + 1)
            for i, s in enumerate(stores[4:])
        ]
    )
    closed = [r for r in results if r is not None]
    assert len(closed) == 1
    run = stores[0].get_run(DATE)
    assert run == closed[0]
    assert run.status == "succeeded" and run.counts == {"superseded": 1}
    assert [p.finished for p in stores[0].shard_states(DATE)] == [True] * 4
    for s in stores:
        s.close()


def test_a_closer_that_died_after_claiming_the_run_closes_it_on_its_retry(
    store: FirestoreStore,
) -> None:
    store.acquire_run(DATE, "exec-a", 2, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: [], 1: []}, [RowOutcome(2, Status.SUPERSEDED)])
    assert finish(store, 0, T0 + 1) is None
    assert store.claim_shard(DATE, "exec-a", 1, 1, LEASE, T0 + 1)
    # task 1 marks shard 1 finished and claims the run's closing, then dies before closing it
    store._sub(DATE, "tasks").document("1").update({"finished": True})
    store._run(DATE).update({"finalizing_task": 1})
    assert store.close_run(DATE, "exec-a", 0, T0 + 2) is None  # task 0: not its claim
    assert store.get_run(DATE).status is RunStatus.RUNNING  # type: ignore[union-attr]
    final = store.close_run(DATE, "exec-a", 1, T0 + 3)  # task 1's retry
    assert final is not None and (final.status, final.finished_at) == (RunStatus.SUCCEEDED, T0 + 3)


def test_a_large_shard_is_split_into_chunks(store: FirestoreStore) -> None:
    store.acquire_run(DATE, "exec-a", 2, LEASE, T0)
    items = [
        WorkItem(row=r, date=DATE, nik=f"{r:016d}", phone="+6281234567890")
        for r in range(2, 12_002)
    ]
    write_manifest(store, DATE, "exec-a", {0: items, 1: items[:5]}, [])
    docs = {d.id: d.to_dict() for d in store._sub(DATE, "manifest").stream()}
    assert sorted(docs) == [f"exec-a-0000-{n:04d}" for n in range(6)] + ["exec-a-0001-0000"]
    assert all(len(d["items"]) <= CHUNK for d in docs.values())
    assert store.read_shard(DATE, "exec-a", 0) == items
    assert store.read_shard(DATE, "exec-a", 1) == items[:5]


def test_documents_carry_expire_at_for_the_ttl_policy(store: FirestoreStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    store.record_outcomes(DATE, [RowOutcome(2, Status.UPDATED)])
    assert store._run(DATE).get().get("expire_at") is not None
    assert store._sub(DATE, "rows").document("0000002").get().get("expire_at") is not None


def test_the_manifest_expires_in_days_and_the_run_in_its_retention(store: FirestoreStore) -> None:
    """The TTL policy deletes each manifest chunk at its expire_at: the manifest's (full NIKs and
    numbers, 3 days), not the run's (400 days) nor the ledger's."""
    store.acquire_run(DATE, "exec-a", 2, LEASE, T0)
    items = [item(r) for r in range(2, 2 + CHUNK + 1)]
    write_manifest(store, DATE, "exec-a", {0: items, 1: [item(9000)]}, [])
    run = store.get_run(DATE)
    assert run is not None and run.manifest_expires is not None
    chunks = list(store._sub(DATE, "manifest").stream())
    assert len(chunks) == 3
    assert {c.get("expire_at").timestamp() for c in chunks} == {run.manifest_expires}
    days = (run.manifest_expires - time.time()) / 86400
    assert 2.99 < days <= 3
    run_days = (store._run(DATE).get().get("expire_at").timestamp() - time.time()) / 86400
    assert 399.99 < run_days <= 400


def test_a_retried_task_0_clears_what_an_interrupted_takeover_left(store: FirestoreStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    # as if the first attempt died before clearing the previous run's rows
    store.record_outcomes(DATE, [RowOutcome(9, Status.DEFERRED, "from an older run")])
    assert store.acquire_run(DATE, "exec-a", 1, LEASE, T0 + 1) is LockResult.RESUMED
    assert store.outcomes(DATE) == []
    # once the manifest is ready, a retry keeps everything
    write_manifest(store, DATE, "exec-a", {0: [item(2)]}, [RowOutcome(3, Status.SUPERSEDED)])
    assert store.acquire_run(DATE, "exec-a", 1, LEASE, T0 + 2) is LockResult.RESUMED
    assert store.outcomes(DATE) == [RowOutcome(3, Status.SUPERSEDED)]
    assert store.read_shard(DATE, "exec-a", 0) == [item(2)]


def test_the_last_outcome_of_a_row_in_one_call_wins(store: FirestoreStore) -> None:
    outcomes = [RowOutcome(2, Status.DEFERRED, str(n)) for n in range(600)]
    store.record_outcomes(DATE, [*outcomes, RowOutcome(2, Status.UPDATED, "last")])
    assert store.outcomes(DATE) == [RowOutcome(2, Status.UPDATED, "last")]


def test_a_replay_while_the_run_closes_is_counted(
    store: FirestoreStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: [item(2)]}, [])
    store.record_outcomes(DATE, [RowOutcome(2, Status.DEFERRED, "503")])
    read = store.outcomes
    replayed: list[bool] = []

    def outcomes_then_a_replay(run_date: str) -> list[RowOutcome]:
        found = read(run_date)
        if not replayed:  # the replay function lands between the count and the close
            replayed.append(True)
            store.record_replay(DATE, "exec-a", [RowOutcome(2, Status.UPDATED, "replayed")], T0 + 1)
        return found

    monkeypatch.setattr(store, "outcomes", outcomes_then_a_replay)
    final = finish(store, 0, T0 + 2)
    assert final is not None
    assert (final.status, final.counts) == (RunStatus.SUCCEEDED, {"updated": 1})
    assert store.get_run(DATE) == final


def test_a_write_that_does_not_land_is_an_error(store: FirestoreStore) -> None:
    oversized = {"v": "x" * 1_100_000}  # over Firestore's 1 MiB document limit
    with pytest.raises(StoreWriteError, match=r"of 2 Firestore writes failed .*longer than"):
        store._bulk(
            [
                (store.db.collection("probe").document("big"), oversized),
                (store.db.collection("probe").document("small"), {"v": 1}),
            ]
        )


def test_the_retention_settings_reach_the_store(project: str) -> None:
    """MANIFEST_RETENTION_DAYS and RETENTION_DAYS, as terraform sets them on the job."""
    from common.config import load_settings
    from common.runtime import open_store

    env = {"STATE_BACKEND": "firestore", "GOOGLE_CLOUD_PROJECT": project}
    retentions = {"MANIFEST_RETENTION_DAYS": "5", "RETENTION_DAYS": "30"}
    settings = load_settings({**env, **retentions}, role="store")
    store = open_store(settings)
    assert isinstance(store, FirestoreStore)
    assert (store.manifest_retention_days, store.retention.days) == (5, 30)
    store.close()
