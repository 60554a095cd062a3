"""`phonesync status` and `phonesync report` read the job's store and tell an operator what happened."""

import csv
import io
import json
import time
from pathlib import Path

import pytest

from common.jakarta import jakarta_time
from common.outcomes import RowOutcome, Status
from common.store import ShardState, SqliteStore, WorkItem
from jobs.cli import main
from tests.store_contract import write_manifest

DATE = "2025-09-23"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    store.acquire_run(DATE, "phonesync-abc12", 2, 60, 1_000.0)
    item = WorkItem(2, DATE, "3171044203920001", "+6281234567890")
    write_manifest(
        store,
        DATE,
        "phonesync-abc12",
        {0: [item], 1: []},
        [
            RowOutcome(
                3,
                Status.INVALID_PHONE,
                "phone_number: contains letters (a typo such as o for 0, or an extension); nothing applied for this NIK",
                nik_masked="3578********0002",
            )
        ],
    )
    store.record_outcomes(
        DATE,
        [RowOutcome(2, Status.UPDATED, "mobile phone added", "patient-001", "3171********0001")],
    )
    store.claim_shard(DATE, "phonesync-abc12", 0, 0, 60, time.time())
    store.put_progress(
        DATE,
        ShardState(
            0, "phonesync-abc12", total=1, done=1, counts={"updated": 1}, updated_at=1_001.0
        ),
    )
    store.close()
    return path


def finish_both(store: SqliteStore) -> None:
    store.finish_shard(DATE, "phonesync-abc12", 0, 0, 1_010.0)
    store.claim_shard(DATE, "phonesync-abc12", 1, 1, 60, 1_011.0)
    store.finish_shard(DATE, "phonesync-abc12", 1, 1, 1_012.0)


def test_status_mid_run_shows_tasks_and_counts_so_far(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--date", DATE, "--state", str(state)]) == 5  # running
    out = capsys.readouterr().out
    assert "run 2025-09-23: running" in out
    assert "started    1970-01-01 07:16:40+07:00" in out  # Asia/Jakarta, offset shown
    assert "execution  phonesync-abc12" in out
    assert "shards     0/2 finished" in out
    assert "shard   0  1/1 (100%) task 0, updated " in out
    assert "shard   1  not claimed yet" in out
    assert "updated          1" in out


def test_status_shows_who_holds_each_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    store = SqliteStore(tmp_path / "state.sqlite3", clock=lambda: now - 300)
    store.acquire_run(DATE, "exec-s", 4, 60, now - 300)
    items = [WorkItem(2 + i, DATE, f"317104420392000{i}", "+6281234567890") for i in range(4)]
    write_manifest(store, DATE, "exec-s", {i: [items[i]] for i in range(4)}, [])
    store.claim_shard(DATE, "exec-s", 0, 0, 60, now - 200)
    store.put_progress(DATE, ShardState(0, "exec-s", 1, 1, {"updated": 1}, now - 160))
    store.finish_shard(DATE, "exec-s", 0, 0, now - 150)
    store.claim_shard(DATE, "exec-s", 1, 1, 60, now - 100)  # task 1 died: lease over at -40
    store.put_progress(DATE, ShardState(1, "exec-s", 1, 0, {}, now - 100))
    store.claim_shard(DATE, "exec-s", 2, 0, 60, now - 10)  # task 0 went on to shard 2
    store.put_progress(DATE, ShardState(2, "exec-s", 1, 0, {}, now - 5))
    store.close()
    assert main(["status", "--date", DATE, "--state", str(tmp_path / "state.sqlite3")]) == 5
    lines = capsys.readouterr().out.splitlines()
    kept = jakarta_time(now - 300 + 3 * 86400)
    assert lines[3:9] == [
        "  rows       4",
        f"  manifest   kept until {kept} (full NIKs and numbers; replays need it)",
        "  shards     1/4 finished",
        "  shard   0  1/1 (100%) done by task 0",
        "  shard   1  0/1 (0%) task 1 gone (lease expired 40 s ago):"
        " the next task to look takes it over",
        "  shard   2  0/1 (0%) task 0, updated 5 s ago",
    ]
    assert lines[9] == "  shard   3  not claimed yet"


def test_status_after_the_last_task_shows_the_final_status(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(state)
    finish_both(store)
    store.close()
    assert main(["status", "--date", DATE, "--state", str(state)]) == 3
    out = capsys.readouterr().out
    assert "run 2025-09-23: needs_action" in out
    assert "(12 s in total)" in out
    assert "invalid_phone    1" in out
    assert "rows needing action (1;" in out
    assert "row     3  invalid_phone  3578********0002  phone_number: contains letters" in out


@pytest.mark.parametrize(
    "outcome,status,code",
    [
        (RowOutcome(3, Status.SUPERSEDED, "row 2 gives a newer number"), "succeeded", 0),
        (RowOutcome(3, Status.NOT_FOUND, "no patient carries this NIK"), "needs_action", 3),
        (RowOutcome(3, Status.DEFERRED, "FHIR answered 503"), "partial", 4),
    ],
)
def test_status_exits_0_only_for_a_plainly_succeeded_run(
    state: Path, outcome: RowOutcome, status: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(state)
    store.record_outcomes(DATE, [outcome])
    finish_both(store)
    store.close()
    assert main(["status", "--date", DATE, "--state", str(state)]) == code
    assert f"run 2025-09-23: {status}" in capsys.readouterr().out


def test_status_of_a_failed_run_or_a_date_without_run(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(state)
    store.fail_run(DATE, "phonesync-abc12", "sheet: missing column phone_number", 1_005.0)
    store.close()
    assert main(["status", "--date", DATE, "--state", str(state)]) == 1
    assert "failed — sheet: missing column phone_number" in capsys.readouterr().out
    assert main(["status", "--date", "2025-01-01", "--state", str(state)]) == 6
    assert "no run recorded for 2025-01-01" in capsys.readouterr().out


def test_report_csv_is_what_a_field_officer_needs(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--date", DATE, "--state", str(state)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["row"], r["nik"], r["status"]) for r in rows] == [
        ("2", "3171********0001", "updated"),
        ("3", "3578********0002", "invalid_phone"),
    ]
    assert rows[1]["reason"].startswith("phone_number: contains letters")


def test_report_json_to_a_file_without_full_niks(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert (
        main(
            ["report", "--date", DATE, "--state", str(state), "--format", "json", "--out", str(out)]
        )
        == 0
    )
    rows = json.loads(out.read_text())
    assert rows[0] == {
        "row": 2,
        "nik": "3171********0001",
        "status": "updated",
        "reason": "mobile phone added",
        "warning": "",
        "patient_id": "patient-001",
        "waiting_since": "",
    }
    assert "3171044203920001" not in out.read_text()


def test_unknown_date_or_missing_state_exits_2(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--date", "2025-01-01", "--state", str(state)]) == 2
    assert "no outcomes recorded for 2025-01-01" in capsys.readouterr().err
    assert main(["status", "--state", str(tmp_path / "nothing.sqlite3")]) == 2
    assert "no local state" in capsys.readouterr().err


def test_bare_phonesync_lists_the_commands_and_version_works(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("run", "status", "report", "replay", "transform", "fhir-sim"):
        assert f"\n    {command}" in out
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("phonesync ")


def test_a_replay_after_the_manifest_expired_says_to_rerun_the_date(tmp_path: Path) -> None:
    from common.errors import InputError
    from jobs.operator import replay_candidates

    store = SqliteStore(tmp_path / "state.sqlite3")
    store.acquire_run(DATE, "exec-s", 1, 60, time.time())
    write_manifest(
        store, DATE, "exec-s", {0: [WorkItem(2, DATE, "3171044203920001", "+62812")]}, []
    )
    store.record_outcomes(DATE, [RowOutcome(2, Status.DEFERRED, "503")])
    assert [i.row for i in replay_candidates(store, DATE, Status.DEFERRED, [])] == [2]
    expires = store.get_run(DATE).manifest_expires  # type: ignore[union-attr]
    assert expires is not None
    store.clock = lambda: expires
    with pytest.raises(InputError, match=r"expired at .* rerun the date instead"):
        replay_candidates(store, DATE, Status.DEFERRED, [])
    store.close()
