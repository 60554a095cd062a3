"""Behaviour every StateStore backend must show. Backends' test modules run these functions.

Kept in a plain module (not a test module) so each backend's test file parametrises it with its
own fixture: tests/test_store_sqlite.py, tests/test_store_firestore.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from common.drift import DriftClass, DriftRow, ReconcileRun
from common.outcomes import RowOutcome, Status
from common.store import (
    LedgerEntry,
    LockResult,
    RunState,
    RunStatus,
    ShardState,
    StateStore,
    WaitingRow,
    WorkItem,
)

DATE = "2025-09-23"
LEASE = 60.0
T0 = 1_000_000.0


def item(row: int) -> WorkItem:
    return WorkItem(row=row, date=DATE, nik=f"31710442039200{row:02d}", phone="+6281234567890")


def write_manifest(
    store: StateStore,
    run_date: str,
    execution: str,
    shards: Mapping[int, Sequence[WorkItem]],
    decided: Sequence[RowOutcome],
    counted: Mapping[str, int] | None = None,
) -> None:
    """Task 0's manifest: the rows decided from the sheet recorded, then the shards."""
    store.record_outcomes(run_date, decided)
    store.write_manifest(run_date, execution, shards, len(decided), counted)


def finish(
    store: StateStore, shard: int, now: float, execution: str = "exec-a", run_date: str = DATE
) -> RunState | None:
    """Task ``shard`` claims its own shard and finishes it, as a task whose shard is synced."""
    assert store.claim_shard(run_date, execution, shard, shard, LEASE, now)
    return store.finish_shard(run_date, execution, shard, shard, now)


def check_execution_date_is_fixed_by_the_first_caller(store: StateStore) -> None:
    assert store.bind_execution_date("exec-1", "2025-09-23") == "2025-09-23"
    # task 3 starts after midnight: it still works on task 0's date
    assert store.bind_execution_date("exec-1", "2025-09-24") == "2025-09-23"
    assert store.bind_execution_date("exec-2", "2025-09-24") == "2025-09-24"


def check_one_execution_holds_a_date(store: StateStore) -> None:
    assert store.acquire_run(DATE, "exec-a", 2, LEASE, T0) is LockResult.ACQUIRED
    assert store.acquire_run(DATE, "exec-b", 2, LEASE, T0 + 1) is LockResult.HELD
    assert store.acquire_run(DATE, "exec-a", 2, LEASE, T0 + 2) is LockResult.RESUMED
    run = store.get_run(DATE)
    assert run is not None
    assert (run.execution, run.status, run.task_count) == ("exec-a", RunStatus.RUNNING, 2)


def check_an_expired_lease_is_taken_over(store: StateStore) -> None:
    assert store.acquire_run(DATE, "exec-a", 1, LEASE, T0) is LockResult.ACQUIRED
    assert store.renew_lease(DATE, "exec-a", LEASE, T0 + 50)
    assert store.acquire_run(DATE, "exec-b", 1, LEASE, T0 + 100) is LockResult.HELD
    assert store.acquire_run(DATE, "exec-b", 1, LEASE, T0 + 111) is LockResult.ACQUIRED
    assert not store.renew_lease(DATE, "exec-a", LEASE, T0 + 112)
    run = store.get_run(DATE)
    assert run is not None and run.execution == "exec-b"


def check_a_finished_date_can_be_rerun(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: []}, [RowOutcome(2, Status.INVALID_NIK, "x")])
    assert finish(store, 0, T0 + 5) is not None
    assert store.acquire_run(DATE, "exec-b", 1, LEASE, T0 + 10) is LockResult.ACQUIRED
    run = store.get_run(DATE)
    assert run is not None
    assert (run.execution, run.status, run.manifest_ready) == ("exec-b", RunStatus.RUNNING, False)
    assert store.outcomes(DATE) == []  # the rerun records its own outcomes


def check_manifest_is_invisible_until_ready_then_sharded(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 3, LEASE, T0)
    assert store.read_shard(DATE, "exec-a", 0) is None
    decided = [
        RowOutcome(
            5, Status.SUPERSEDED, "row 6 gives a newer number", nik_masked="3171********0001"
        )
    ]
    write_manifest(store, DATE, "exec-a", {0: [item(2), item(3)], 1: [item(4)], 2: []}, decided)
    assert store.read_shard(DATE, "exec-a", 0) == [item(2), item(3)]
    assert store.read_shard(DATE, "exec-a", 1) == [item(4)]
    assert store.read_shard(DATE, "exec-a", 2) == []
    assert store.read_shard(DATE, "exec-other", 0) is None
    assert store.outcomes(DATE) == decided
    run = store.get_run(DATE)
    assert run is not None and run.manifest_ready and run.total_rows == 4


def check_the_manifest_expires_on_its_own_short_retention(store: StateStore) -> None:
    """Full NIKs and numbers are kept manifest_retention_days (3 by default), not the run's
    retention: then the manifest reads as absent, and a new run of the date has its own."""
    days = store.manifest_retention_days
    assert days == 3
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    assert store.get_run(DATE).manifest_expires is None  # type: ignore[union-attr]
    written = time.time()
    write_manifest(store, DATE, "exec-a", {0: [item(2)]}, [])
    run = store.get_run(DATE)
    assert run is not None and run.manifest_expires is not None
    assert abs(run.manifest_expires - (written + days * 86400)) < 60
    assert not run.manifest_expired(time.time()) and run.manifest_expired(run.manifest_expires)
    assert store.read_shard(DATE, "exec-a", 0) == [item(2)]
    expires = run.manifest_expires
    store.clock = lambda: expires - 1
    assert store.read_shard(DATE, "exec-a", 0) == [item(2)]
    store.clock = lambda: expires
    assert store.read_shard(DATE, "exec-a", 0) is None
    later = store.get_run(DATE)
    assert later is not None and later.manifest_ready and later.status is RunStatus.RUNNING
    assert store.acquire_run(DATE, "exec-b", 1, LEASE, T0 + 200) is LockResult.ACQUIRED
    assert store.get_run(DATE).manifest_expires is None  # type: ignore[union-attr]
    write_manifest(store, DATE, "exec-b", {0: [item(3)]}, [])
    assert store.read_shard(DATE, "exec-b", 0) == [item(3)]  # its own, days from its clock


def check_rows_outside_the_window_are_counted_without_records(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    decided = [RowOutcome(3, Status.INVALID_PHONE, "x")]
    write_manifest(store, DATE, "exec-a", {0: [item(2)]}, decided, {"other_date": 980_000})
    store.record_outcomes(DATE, [RowOutcome(2, Status.UPDATED, "mobile phone added")])
    assert [o.row for o in store.outcomes(DATE)] == [2, 3]  # no record per counted row
    run = finish(store, 0, T0 + 5)
    assert run is not None and run.total_rows == 980_002
    assert run.counts == {"updated": 1, "other_date": 980_000, "invalid_phone": 1}
    assert store.acquire_run(DATE, "exec-b", 1, LEASE, T0 + 10) is LockResult.ACQUIRED
    write_manifest(store, DATE, "exec-b", {0: []}, [])  # a rerun whose window holds every row
    rerun = finish(store, 0, T0 + 15, "exec-b")
    assert rerun is not None and rerun.counts == {} and rerun.total_rows == 0


def check_a_large_manifest_round_trips(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    read_at = "2025-09-23T16:00:00.123456+00:00"
    items = [
        WorkItem(row=r, date=DATE, nik=f"{r:016d}", phone="+6281234567890", read_at=read_at)
        for r in range(2, 12_002)
    ]
    write_manifest(store, DATE, "exec-a", {0: items}, [])
    assert store.read_shard(DATE, "exec-a", 0) == items


def check_outcomes_are_upserted_by_row(store: StateStore) -> None:
    store.record_outcomes(
        DATE, [RowOutcome(3, Status.DEFERRED, "503"), RowOutcome(2, Status.UPDATED)]
    )
    store.record_outcomes(DATE, [RowOutcome(3, Status.UPDATED, "replayed", "p-3")])
    assert store.outcomes(DATE) == [
        RowOutcome(2, Status.UPDATED),
        RowOutcome(3, Status.UPDATED, "replayed", "p-3"),
    ]


def check_the_last_task_to_finish_closes_the_run(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 2, LEASE, T0)
    write_manifest(
        store, DATE, "exec-a", {0: [item(2)], 1: [item(3)]}, [RowOutcome(4, Status.INVALID_PHONE)]
    )
    assert store.close_run(DATE, "exec-a", 0, T0) is None  # no shard finished yet
    store.record_outcomes(DATE, [RowOutcome(2, Status.UPDATED)])
    assert finish(store, 0, T0 + 1) is None
    assert store.close_run(DATE, "exec-a", 0, T0 + 1) is None  # shard 1 is not finished
    store.record_outcomes(DATE, [RowOutcome(3, Status.DEFERRED, "FHIR down")])
    final = finish(store, 1, T0 + 2)
    assert final is not None
    assert final.status is RunStatus.PARTIAL
    assert final.counts == {"updated": 1, "invalid_phone": 1, "deferred": 1}
    assert final.finished_at == T0 + 2
    assert [p.finished for p in store.shard_states(DATE)] == [True, True]
    # a retried task finishing again, or a task finding every shard finished, closes nothing
    assert store.finish_shard(DATE, "exec-a", 1, 1, T0 + 3) is None
    assert store.close_run(DATE, "exec-a", 0, T0 + 3) is None
    assert store.get_run(DATE) == final


def check_a_run_without_failures_succeeds_and_a_failed_run_says_why(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: [item(2)]}, [RowOutcome(3, Status.SUPERSEDED)])
    store.record_outcomes(DATE, [RowOutcome(2, Status.UNCHANGED)])
    final = finish(store, 0, T0 + 1)
    assert final is not None and final.status is RunStatus.SUCCEEDED
    store.acquire_run("2025-09-22", "exec-c", 1, LEASE, T0)
    write_manifest(store, "2025-09-22", "exec-c", {0: [item(2)]}, [])
    store.record_outcomes("2025-09-22", [RowOutcome(2, Status.NOT_FOUND)])
    needs = finish(store, 0, T0 + 1, "exec-c", "2025-09-22")
    assert needs is not None and needs.status is RunStatus.NEEDS_ACTION
    store.acquire_run("2025-09-24", "exec-b", 1, LEASE, T0)
    store.fail_run("2025-09-24", "exec-b", "sheet unreadable: 403", T0 + 1)
    failed = store.get_run("2025-09-24")
    assert failed is not None and failed.status is RunStatus.FAILED and "403" in failed.reason
    # Cloud Run retries task 0 of the same execution: the run is running again
    assert store.acquire_run("2025-09-24", "exec-b", 1, LEASE, T0 + 2) is LockResult.RESUMED
    retried = store.get_run("2025-09-24")
    assert (
        retried is not None and retried.status is RunStatus.RUNNING and retried.finished_at is None
    )


def check_a_replayed_row_moves_the_counts_and_can_complete_the_run(store: StateStore) -> None:
    assert store.record_replay("2025-01-01", "exec-a", [RowOutcome(2, Status.UPDATED)], T0) is None
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: [item(2), item(3)]}, [])
    store.record_outcomes(
        DATE, [RowOutcome(2, Status.DEFERRED, "503"), RowOutcome(3, Status.DEFERRED, "503")]
    )
    final = finish(store, 0, T0 + 1)
    assert final is not None and final.status is RunStatus.PARTIAL
    # a replay of an older execution's row does not touch this run's report
    assert store.record_replay(DATE, "exec-old", [RowOutcome(2, Status.UPDATED)], T0 + 4) is None
    after_one = store.record_replay(
        DATE, "exec-a", [RowOutcome(2, Status.UPDATED, "replayed", "p-2")], T0 + 5
    )
    assert after_one is not None
    assert (after_one.status, after_one.counts) == (
        RunStatus.PARTIAL,
        {"deferred": 1, "updated": 1},
    )
    after_two = store.record_replay(
        DATE, "exec-a", [RowOutcome(3, Status.UNCHANGED, "replayed", "p-3")], T0 + 6
    )
    assert after_two is not None
    assert (after_two.status, after_two.counts) == (
        RunStatus.SUCCEEDED,
        {"updated": 1, "unchanged": 1},
    )
    assert [o.status for o in store.outcomes(DATE)] == [Status.UPDATED, Status.UNCHANGED]


def check_progress_is_one_record_per_shard(store: StateStore) -> None:
    store.put_progress(
        DATE, ShardState(1, "e", total=10, done=3, counts={"updated": 3}, updated_at=T0)
    )
    store.put_progress(
        DATE, ShardState(0, "e", total=5, done=5, counts={"unchanged": 5}, updated_at=T0)
    )
    store.put_progress(
        DATE,
        ShardState(1, "e", total=10, done=7, counts={"deferred": 1, "updated": 6}, updated_at=T0),
    )
    store.put_progress(
        DATE, ShardState(1, "e", total=10, done=7, counts={"updated": 7}, updated_at=T0 + 1)
    )
    assert [(p.shard, p.done, p.counts) for p in store.shard_states(DATE)] == [
        (0, 5, {"unchanged": 5}),
        (1, 7, {"updated": 7}),  # the counts replaced whole, not merged status by status
    ]


def check_a_shard_is_held_by_one_task_until_its_lease_expires(store: StateStore) -> None:
    assert not store.claim_shard(DATE, "exec-a", 0, 0, LEASE, T0)  # no run yet
    store.acquire_run(DATE, "exec-a", 3, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: [item(2)], 1: [item(3)], 2: []}, [])
    assert store.shard_states(DATE) == []  # nobody has claimed a shard yet
    assert store.claim_shard(DATE, "exec-a", 0, 0, LEASE, T0)
    assert not store.claim_shard(DATE, "exec-a", 0, 1, LEASE, T0 + 1)  # held by task 0
    assert not store.claim_shard(DATE, "exec-b", 1, 1, LEASE, T0 + 1)  # not exec-b's run
    # a retried task 0 (same index, next attempt) resumes the shard its dead attempt held
    assert store.claim_shard(DATE, "exec-a", 0, 0, LEASE, T0 + 2)
    assert store.renew_shard(DATE, "exec-a", 0, 0, LEASE, T0 + 50)  # held until T0 + 110
    assert not store.renew_shard(DATE, "exec-a", 0, 1, LEASE, T0 + 50)  # not task 1's
    assert not store.claim_shard(DATE, "exec-a", 0, 1, LEASE, T0 + 109)
    # task 0 stopped renewing: once its lease expired, task 1 takes the shard over
    assert store.claim_shard(DATE, "exec-a", 0, 1, LEASE, T0 + 110)
    assert not store.renew_shard(DATE, "exec-a", 0, 0, LEASE, T0 + 111)  # task 0 lost it
    assert store.finish_shard(DATE, "exec-a", 0, 0, T0 + 112) is None  # and cannot finish it
    (shard,) = store.shard_states(DATE)
    assert (shard.shard, shard.owner, shard.lease_until, shard.finished) == (
        0,
        1,
        T0 + 110 + LEASE,
        False,
    )
    assert store.finish_shard(DATE, "exec-a", 0, 1, T0 + 113) is None  # shards 1, 2 open
    assert not store.claim_shard(DATE, "exec-a", 0, 2, LEASE, T0 + 999)  # finished
    assert store.claim_shard(DATE, "exec-a", 2, 1, LEASE, T0 + 114)  # never claimed: free
    assert [(s.shard, s.owner, s.finished) for s in store.shard_states(DATE)] == [
        (0, 1, True),
        (2, 1, False),
    ]


def check_progress_leaves_a_shards_claim_alone(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 2, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: [item(2)], 1: [item(3)]}, [])
    assert store.claim_shard(DATE, "exec-a", 1, 0, LEASE, T0)
    store.put_progress(
        DATE, ShardState(1, "exec-a", total=1, done=1, counts={"updated": 1}, updated_at=T0 + 1)
    )
    (shard,) = store.shard_states(DATE)
    assert shard == ShardState(
        1, "exec-a", 1, 1, {"updated": 1}, T0 + 1, finished=False, owner=0, lease_until=T0 + LEASE
    )
    assert not store.claim_shard(DATE, "exec-a", 1, 1, LEASE, T0 + 2)  # still task 0's
    assert store.finish_shard(DATE, "exec-a", 1, 0, T0 + 3) is None
    store.put_progress(DATE, ShardState(1, "exec-a", total=1, done=1, updated_at=T0 + 4))
    (shard,) = store.shard_states(DATE)
    assert (shard.finished, shard.owner) == (True, 0)


def check_a_run_counts_its_failures_until_a_new_run(store: StateStore) -> None:
    assert store.fail_run(DATE, "exec-a", "no run yet", T0) == 0
    store.acquire_run(DATE, "exec-a", 2, LEASE, T0)
    assert store.fail_run(DATE, "exec-a", "sheet unreadable: 403", T0 + 1) == 1
    # Cloud Run retries task 0: it revives the run, and fails it again
    assert store.acquire_run(DATE, "exec-a", 2, LEASE, T0 + 2) is LockResult.RESUMED
    assert store.fail_run(DATE, "exec-a", "sheet unreadable: 403", T0 + 3) == 2
    assert store.fail_run(DATE, "exec-b", "not its run", T0 + 4) == 0
    # a new execution's run is another run: its first failure is the first again
    assert store.acquire_run(DATE, "exec-b", 2, LEASE, T0 + 5) is LockResult.ACQUIRED
    assert store.fail_run(DATE, "exec-b", "sheet unreadable: 404", T0 + 6) == 1


def check_ledger_keeps_the_entry_of_the_latest_read(store: StateStore) -> None:
    read_1, read_2, read_3 = (f"2025-09-23T16:0{n}:00.000000+00:00" for n in (1, 2, 3))
    newer = LedgerEntry("k1", "h-new", "2025-09-23", 7, "t2", read_2)
    legacy = LedgerEntry("k2", "h2", "2025-09-22", 3, "t1")  # written before read stamps
    store.ledger_put([newer, legacy])
    # an older read never wins, whatever its sheet date and row say
    store.ledger_put([LedgerEntry("k1", "h-old", "2025-09-24", 99, "t3", read_1)])
    assert store.ledger_get(["k1", "k2", "missing"]) == {"k1": newer, "k2": legacy}
    # the same read replaces (a retried task); a later read replaces, whatever its row number
    same = LedgerEntry("k1", "h-same-read", "2025-09-23", 2, "t4", read_2)
    store.ledger_put([same])
    assert store.ledger_get(["k1"])["k1"] == same
    later = LedgerEntry("k1", "h-later-read", "2025-09-22", 2, "t5", read_3)
    store.ledger_put([later, LedgerEntry("k2", "h2", "2025-09-22", 3, "t1", read_1)])
    got = store.ledger_get(["k1", "k2"])
    assert got["k1"] == later and got["k2"].read_at == read_1
    assert later.read_after(read_2) and not later.read_after(read_3) and not legacy.read_after("")


def check_ledger_keeps_the_registry_version_of_the_write(store: StateStore) -> None:
    read_1, read_2 = "2025-09-23T16:01:00.000000+00:00", "2025-09-24T16:01:00.000000+00:00"
    first = LedgerEntry("k1", "h1", DATE, 2, "t1", read_1, "v7", "2025-09-23T16:02:03.456Z")
    store.ledger_put([first])
    assert store.ledger_get(["k1"])["k1"] == first
    # a later write replaces the version with the registry's answer to it
    later = LedgerEntry("k1", "h2", DATE, 2, "t2", read_2, "v8", "2025-09-24T16:02:03.456Z")
    store.ledger_put([later])
    assert store.ledger_get(["k1"])["k1"] == later


def check_reads_of_the_sheet_keep_the_latest_per_date(store: StateStore) -> None:
    read_1, read_2 = "2025-09-23T16:00:00.000000+00:00", "2025-09-24T16:00:00.000000+00:00"
    assert store.last_read("2025-09-22") == ""
    store.note_read(read_2, ["2025-09-23", "2025-09-24"])
    store.note_read(read_1, ["2025-09-22", "2025-09-23"])  # older: kept only where none is
    assert [store.last_read(d) for d in ("2025-09-22", "2025-09-23", "2025-09-24")] == [
        read_1,
        read_2,
        read_2,
    ]


def check_ledger_handles_many_keys(store: StateStore) -> None:
    entries = [LedgerEntry(f"k{i}", f"h{i}", DATE, i, "t") for i in range(1_200)]
    store.ledger_put(entries)
    got = store.ledger_get([e.key for e in entries] + ["absent"])
    assert len(got) == 1_200 and got["k1199"].row == 1199


def check_a_run_remembers_the_dates_it_covers_until_a_rerun(store: StateStore) -> None:
    store.acquire_run("2025-09-22", "exec-22", 1, LEASE, T0)
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    store.set_window(DATE, "exec-other", "2025-09-01", [], [])  # not this run: ignored
    store.set_window(DATE, "exec-a", "2025-09-20", ["2025-09-20", "2025-09-21"], ["2025-09-10"])
    run = store.get_run(DATE)
    assert run is not None
    assert (run.window_first, run.caught_up, run.unsynced) == (
        "2025-09-20",
        ["2025-09-20", "2025-09-21"],
        ["2025-09-10"],
    )
    assert [r.run_date for r in store.runs_since("2025-09-22")] == ["2025-09-22", DATE]
    assert [r.run_date for r in store.runs_since("2025-09-23")] == [DATE]
    assert store.runs_since("2025-09-24") == []
    assert store.runs_since("2025-09-23")[0].caught_up == ["2025-09-20", "2025-09-21"]
    write_manifest(store, DATE, "exec-a", {0: []}, [])
    finish(store, 0, T0 + 1)
    assert store.acquire_run(DATE, "exec-b", 1, LEASE, T0 + 2) is LockResult.ACQUIRED
    rerun = store.get_run(DATE)
    assert rerun is not None and (rerun.window_first, rerun.caught_up) == ("", [])


def check_outcomes_can_be_read_by_status_and_keep_since(store: StateStore) -> None:
    waited = RowOutcome(
        4, Status.INVALID_PHONE, "x", nik_masked="3171********0004", since="2025-09-01"
    )
    store.record_outcomes(
        DATE, [RowOutcome(2, Status.UPDATED), RowOutcome(3, Status.NOT_FOUND), waited]
    )
    assert store.outcomes(DATE, {Status.INVALID_PHONE, Status.NOT_FOUND}) == [
        RowOutcome(3, Status.NOT_FOUND),
        waited,
    ]
    assert store.outcomes(DATE, set()) == []
    assert len(store.outcomes(DATE)) == 3
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    since = WorkItem(
        row=5, date=DATE, nik="3171044203920005", phone="+6281234567890", since="2025-09-01"
    )
    write_manifest(store, DATE, "exec-a", {0: [since, item(6)]}, [])
    assert store.read_shard(DATE, "exec-a", 0) == [since, item(6)]


def check_rows_of_an_earlier_run_move_its_counts_together(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    write_manifest(store, DATE, "exec-a", {0: [item(2)]}, [])
    store.record_outcomes(
        DATE,
        [
            RowOutcome(2, Status.UPDATED),
            RowOutcome(3, Status.INVALID_PHONE),
            RowOutcome(4, Status.NOT_FOUND),
        ],
    )
    final = finish(store, 0, T0 + 1)
    assert final is not None and final.status is RunStatus.NEEDS_ACTION
    moved = [
        RowOutcome(r, Status.SUPERSEDED, "taken up again by the run of 2025-09-24") for r in (3, 4)
    ]
    after = store.record_replay(DATE, "exec-a", moved, T0 + 2)
    assert after is not None
    assert (after.status, after.counts) == (RunStatus.SUCCEEDED, {"updated": 1, "superseded": 2})
    assert store.get_run(DATE) == after
    assert [o.status for o in store.outcomes(DATE)] == [
        Status.UPDATED,
        Status.SUPERSEDED,
        Status.SUPERSEDED,
    ]
    # many rows at once (over one Firestore transaction's worth)
    many = [RowOutcome(r, Status.INVALID_NIK) for r in range(10, 460)]
    store.record_replay(DATE, "exec-a", many, T0 + 3)
    again = store.record_replay(
        DATE, "exec-a", [RowOutcome(r, Status.SUPERSEDED) for r in range(10, 460)], T0 + 4
    )
    assert again is not None and again.counts == {"updated": 1, "superseded": 452}


def waiting(row: int, read_at: str, since: str = "2025-09-20", **changes: str) -> WaitingRow:
    fields = {
        "sheet_date": "2025-09-20",
        "nik_key": f"k{row}",
        "nik_masked": "3171********0001",
        "status": "invalid_phone",
        "run_date": DATE,
        "execution": "exec-a",
        **changes,
    }
    return WaitingRow(row=row, since=since, read_at=read_at, **fields)  # type: ignore[arg-type]


def check_rows_waiting_on_an_officer_are_kept_by_place(store: StateStore) -> None:
    read_1, read_2, read_3 = (f"2025-09-2{n}T16:00:00.000000+00:00" for n in (1, 2, 3))
    assert store.waiting_rows() == []
    first = waiting(5, read_1, since="2025-09-21")
    undated = waiting(9, read_1, sheet_date="", nik_key="", status="invalid_date")
    store.update_waiting(put=[first, undated])
    assert store.waiting_rows() == [waiting(5, read_1, since="2025-09-21"), undated]
    assert [w.key for w in store.waiting_rows()] == ["2025-09-20-0000005", "undated-0000009"]
    # a later read writes it again: its record, the earlier since of the two
    store.update_waiting(put=[waiting(5, read_2, since="2025-09-22", status="not_found")])
    assert store.waiting_rows()[0] == waiting(5, read_2, since="2025-09-21", status="not_found")
    # an earlier read's (a replay's) never replaces a later read's
    store.update_waiting(put=[waiting(5, read_1, since="2025-09-01", execution="exec-old")])
    assert store.waiting_rows()[0] == waiting(5, read_2, since="2025-09-21", status="not_found")
    # dropped, then written again in one call (a night taking a row up and keeping it)
    store.update_waiting(
        put=[waiting(5, read_3, since="2025-09-23")], drop=[first.key, undated.key]
    )
    assert store.waiting_rows() == [waiting(5, read_3, since="2025-09-23")]
    store.update_waiting(drop=[first.key, "never-stored"])
    assert store.waiting_rows() == []


CHECKS: list[Callable[[StateStore], None]] = [
    value
    for name, value in sorted(globals().items())
    if name.startswith("check_") and callable(value)
]


def check_the_report_tabs_fate_is_kept_per_run_and_cleared_by_a_new_run(store: StateStore) -> None:
    store.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    store.set_report(DATE, "exec-b", "written: someone else's run")  # not this run: ignored
    assert store.get_run(DATE).report == ""  # type: ignore[union-attr]
    store.set_report(DATE, "exec-a", "failed: Sheets API answered 403")
    assert store.get_run(DATE).report == "failed: Sheets API answered 403"  # type: ignore[union-attr]
    write_manifest(store, DATE, "exec-a", {0: []}, [])
    finish(store, 0, T0 + 1)
    assert store.acquire_run(DATE, "exec-c", 1, LEASE, T0 + 2) is LockResult.ACQUIRED
    assert store.get_run(DATE).report == ""  # type: ignore[union-attr]


def drift_row(row: int, drift: DriftClass = DriftClass.DIFFERENT, repair: str = "") -> DriftRow:
    return DriftRow(row, "3171********0001", drift, DATE, f"p-{row}", "lost", repair)


def check_a_reconcile_comes_together_when_its_last_task_records(store: StateStore) -> None:
    run = ReconcileRun("rec-1", "2025-09-01", DATE, task_count=2, started_at=T0)
    assert store.get_reconcile("rec-1") is None and store.latest_reconcile() is None
    first = [drift_row(7), drift_row(3, DriftClass.NOT_FOUND)]
    assert (
        store.record_reconcile(
            run, 1, {"in_sync": 5, "different": 1, "not_found": 1}, first, T0 + 1
        )
        is None
    )
    partial = store.get_reconcile("rec-1")
    assert partial is not None and partial.finished_at is None and partial.tasks_finished == 1
    # a task's records come with its own window: the first caller's stands
    later = ReconcileRun("rec-1", "2025-09-20", DATE, task_count=2, started_at=T0 + 9)
    done = store.record_reconcile(
        later, 0, {"in_sync": 2, "missing": 1}, [drift_row(5, DriftClass.MISSING)], T0 + 2
    )
    assert done is not None and done.finished_at == T0 + 2 and done.tasks_finished == 2
    assert (done.since, done.started_at, done.task_count) == ("2025-09-01", T0, 2)
    assert {k: v for k, v in done.counts.items() if v} == {
        "in_sync": 7,
        "missing": 1,
        "different": 1,
        "not_found": 1,
    }
    assert set(done.counts) == {c.value for c in DriftClass}  # every class, zero included
    assert [r.row for r in store.drift_rows("rec-1")] == [3, 5, 7]
    assert store.drift_rows("rec-1")[0] == drift_row(3, DriftClass.NOT_FOUND)
    # a retried task replaces its own records and does not close the run again
    again = store.record_reconcile(
        run, 1, {"in_sync": 6, "different": 1}, [drift_row(7, repair="repaired")], T0 + 3
    )
    assert again is None
    rerun = store.get_reconcile("rec-1")
    assert rerun is not None and rerun.finished_at == T0 + 2
    assert rerun.counts["in_sync"] == 8 and rerun.counts["not_found"] == 0
    assert [(r.row, r.repair) for r in store.drift_rows("rec-1")] == [(5, ""), (7, "repaired")]


def check_the_latest_reconcile_is_the_one_started_last(store: StateStore) -> None:
    for rid, started in (("rec-b", T0 + 10), ("rec-a", T0), ("rec-c", T0 + 5)):
        run = ReconcileRun(rid, DATE, DATE, task_count=1, started_at=started, repair=True)
        store.record_reconcile(run, 0, {"in_sync": 1}, [], started + 1)
    latest = store.latest_reconcile()
    assert latest is not None and latest.reconcile_id == "rec-b" and latest.repair
    assert latest.finished_at == T0 + 11 and store.drift_rows("rec-b") == []


def check_many_drift_rows_round_trip(store: StateStore) -> None:
    rows = [drift_row(r) for r in range(2, 1_502)]
    run = ReconcileRun("rec-big", DATE, DATE, task_count=1, started_at=T0)
    done = store.record_reconcile(run, 0, {"different": len(rows)}, rows, T0 + 1)
    assert done is not None and done.counts["different"] == 1_500
    assert store.drift_rows("rec-big") == rows


CHECKS: list[Callable[[StateStore], None]] = [
    value
    for name, value in sorted(globals().items())
    if name.startswith("check_") and callable(value)
]
