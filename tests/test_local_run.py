"""`phonesync run` in local mode against the simulator: the sync's promises, one scenario each.

Tasks run in-process one after another, exactly the code a Cloud Run task runs: task 0 writes
the manifest and, alone, claims and syncs every shard; the others find them finished. Tests
with processes drive the real multi-process CLI, and a task killed in its shard.
"""

import asyncio
import copy
import dataclasses
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from common import telemetry
from common.config import load_settings
from common.replay import replay_directly
from common.store import RunState, RunStatus, SqliteStore
from common.telemetry import LOGGER_NAME
from jobs.local import summary
from jobs.task import run_task
from tests.simulator import (
    API_KEY,
    SAMPLE_SHEET,
    RunningSim,
    run_cli,
    sample,
    simulator,
    without_last_updated,
)

# Slow (~40 s): whole runs against the simulator, some in task processes. Not in scripts/test-fast.
pytestmark = pytest.mark.slow

DATE = "2025-09-23"
ROOT = Path(__file__).resolve().parent.parent


def job_env(sim: RunningSim, state: Path, **extra: str) -> dict[str, str]:
    return {
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "SHEET_CSV": str(SAMPLE_SHEET),
        "RUN_DATE": DATE,
        "STATE_PATH": str(state),
        "FHIR_BACKOFF_SECONDS": "0.01",
        "FHIR_TIMEOUT_SECONDS": "2",
        **extra,
    }


def run_job(
    sim: RunningSim, state: Path, tasks: int = 2, execution: str = "exec-1", **extra: str
) -> list[int]:
    codes = []
    for index in range(tasks):
        env = job_env(
            sim,
            state,
            CLOUD_RUN_TASK_INDEX=str(index),
            CLOUD_RUN_TASK_COUNT=str(tasks),
            CLOUD_RUN_EXECUTION=execution,
            **extra,
        )
        codes.append(run_task(load_settings(env)))
    return codes


def run_state(state: Path) -> Any:
    store = SqliteStore(state)
    try:
        return store.get_run(DATE), {o.row: o for o in store.outcomes(DATE)}
    finally:
        store.close()


def puts(sim: RunningSim) -> dict[str, int]:
    return dict(sim.state.puts_by_patient)


def reference() -> list[dict[str, Any]]:
    return without_last_updated(sample("patients_after_phone_update"))


def answered(sim: RunningSim, status: int) -> int:
    """Requests and batch entries the simulator answered with ``status``."""
    counts = sim.state.requests + sim.state.entries
    return sum(n for key, n in counts.items() if key.endswith(f" {status}"))


#: FHIR_BATCH_SIZE: one request per search/update, and the default (batch: the sim lists it).
MODES = pytest.mark.parametrize("batch", ["0", "auto"], ids=["per-row", "batch"])


@pytest.mark.parametrize("batch", ["0", "auto", "3"], ids=["per-row", "batch", "batch-of-3"])
def test_sample_run_gives_the_reference_bundle(tmp_path: Path, batch: str) -> None:
    with simulator() as sim:
        assert run_job(sim, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
        assert without_last_updated(sim.bundle()) == reference()
        run, outcomes = run_state(tmp_path / "s.db")
        assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 10}
        assert "not assigned" in outcomes[6].warning  # 0845… is applied with a warning
        # The server owns meta: no fabricated versionId / lastUpdated goes out (If-Match does).
        assert len(sim.state.put_bodies) == 10
        assert [
            set(b.get("meta", {})) & {"versionId", "lastUpdated"} for b in sim.state.put_bodies
        ] == [set()] * 10
        requests = sim.state.requests
        if batch == "0":
            assert requests["GET 200"] == requests["PUT 200"] == 10 and "POST 200" not in requests
        else:  # every search and update went in Bundles: 2 tasks x (searches, updates) at least
            assert requests["GET 200"] == requests["PUT 200"] == 0
            assert sim.state.entries == {"GET 200": 10, "PUT 200": 10}
            assert 4 <= requests["POST 200"] <= (4 if batch == "auto" else 8)


@MODES
def test_a_rerun_makes_no_row_request(tmp_path: Path, batch: str) -> None:
    with simulator() as sim:
        run_job(sim, tmp_path / "s.db", execution="exec-1", FHIR_BATCH_SIZE=batch)
        sim.state.reset_stats()
        run_job(sim, tmp_path / "s.db", execution="exec-2", FHIR_BATCH_SIZE=batch)
        # No request for a row; task 0's check of the server is the one request.
        assert sim.state.stats() == {
            "requests": {"GET metadata": 1},
            "entries": {},
            "puts_by_patient": {},
        }
        run, _ = run_state(tmp_path / "s.db")
        assert (run.execution, run.status, run.counts) == (
            "exec-2",
            RunStatus.SUCCEEDED,
            {"already_applied": 10},
        )


@MODES
def test_429_retry_after_is_obeyed_and_every_row_lands(tmp_path: Path, batch: str) -> None:
    # Batch mode sends 2 requests here; a limit of 1/s with 10 bursting makes it meet 429s too.
    with simulator(rate_limit=8 if batch == "0" else 1) as sim:
        assert run_job(
            sim, tmp_path / "s.db", tasks=1, FHIR_RATE_LIMIT="0", FHIR_BATCH_SIZE=batch
        ) == [0]
        assert answered(sim, 429) > 0
        assert puts(sim) == {f"patient-{i:03d}": 1 for i in range(1, 11)}


@MODES
def test_5xx_bursts_and_timeouts_are_retried_without_double_writes(
    tmp_path: Path, batch: str
) -> None:
    with simulator(error_rate=0.3, seed=7) as sim:
        sim.state.delay_next(3, 1.5)
        sim.state.fail_next_entries(4, 503)  # batch only: entries failing inside a good Bundle
        run_job(
            sim,
            tmp_path / "s.db",
            FHIR_TIMEOUT_SECONDS="0.5",
            FHIR_MAX_ATTEMPTS="10",
            FHIR_BATCH_SIZE=batch,
        )
        assert puts(sim) == {f"patient-{i:03d}": 1 for i in range(1, 11)}
        run, _ = run_state(tmp_path / "s.db")
        assert run.counts == {"updated": 10}


@MODES
def test_wrong_api_key_defers_rows_after_the_first_refusal(tmp_path: Path, batch: str) -> None:
    with simulator() as sim:
        assert run_job(
            sim,
            tmp_path / "s.db",
            tasks=1,
            FHIR_API_KEY="wrong",
            FHIR_CONCURRENCY="1",
            FHIR_BATCH_SIZE=batch,
        ) == [0]
        run, outcomes = run_state(tmp_path / "s.db")
        assert run.status is RunStatus.PARTIAL and run.counts == {"deferred": 10}
        assert all("refused our credentials" in o.reason for o in outcomes.values())
        assert answered(sim, 401) == 1  # it stopped asking after the first 401


@MODES
def test_a_concurrent_writers_changes_survive_a_412(tmp_path: Path, batch: str) -> None:
    raced: set[str] = set()

    def other_writer(pid: str, state: Any) -> None:
        if pid not in raced:  # once per patient, between our read and our PUT
            raced.add(pid)
            current = copy.deepcopy(state.patient(pid))
            current["telecom"] = [{"system": "email", "value": f"{pid}@example.org"}]
            state.store(pid, current)

    with simulator() as sim:
        sim.state.on_before_put(other_writer)
        run_job(sim, tmp_path / "s.db", FHIR_BATCH_SIZE=batch)
        assert answered(sim, 412) == 10
        patient = sim.state.patient("patient-001")
        assert patient["telecom"] == [
            {"system": "email", "value": "patient-001@example.org"},
            {"system": "phone", "use": "mobile", "value": "081234567890"},
        ]
        assert patient["meta"]["versionId"] == "v003"  # theirs, then ours


@MODES
def test_not_found_and_ambiguous_update_nothing(tmp_path: Path, batch: str) -> None:
    patients = sample()
    patients = [p for p in patients if p["id"] != "patient-003"]
    twin = copy.deepcopy(next(p for p in patients if p["id"] == "patient-004"))
    twin["id"] = "patient-004-duplicate"
    with simulator([*patients, twin]) as sim:
        run_job(sim, tmp_path / "s.db", FHIR_BATCH_SIZE=batch)
        _, outcomes = run_state(tmp_path / "s.db")
        assert outcomes[4].status == "not_found"
        assert outcomes[5].status == "ambiguous" and "patient-004-duplicate" in outcomes[5].reason
        assert "patient-004" not in puts(sim) and "patient-004-duplicate" not in puts(sim)
        assert len(puts(sim)) == 8


@MODES
def test_an_outage_past_the_deadline_defers_rows_and_replay_recovers_them(
    tmp_path: Path, batch: str
) -> None:
    state = tmp_path / "s.db"
    with simulator() as sim:
        sim.state.set_down(True)
        codes = run_job(
            sim, state, FHIR_DEADLINE_SECONDS="0.5", FHIR_MAX_ATTEMPTS="3", FHIR_BATCH_SIZE=batch
        )
        assert codes == [0, 0]  # row failures are outcomes, not crashes
        run, _outcomes = run_state(state)
        assert run.status is RunStatus.PARTIAL and run.counts == {"deferred": 10}
        assert puts(sim) == {}
        # the server recovers; the local replay applies every deferred row exactly once
        sim.state.set_down(False)
        config = load_settings(job_env(sim, state), role="replay")
        store = SqliteStore(state)
        items = [i for idx in range(2) for i in store.read_shard(DATE, "exec-1", idx) or []]
        counts = asyncio.run(replay_directly(config, store, DATE, items))
        store.close()
        assert counts == {"updated": 10}
        assert puts(sim) == {f"patient-{i:03d}": 1 for i in range(1, 11)}
        run, _ = run_state(state)
        assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 10}


@pytest.mark.parametrize("batch", ["0", "2"], ids=["per-row", "batch-of-2"])
def test_a_run_killed_half_way_finishes_on_rerun_with_one_put_per_patient(
    tmp_path: Path, batch: str
) -> None:
    state = tmp_path / "s.db"
    with simulator(latency_ms=150, seed=3) as sim:
        env = {
            **os.environ,
            **job_env(
                sim,
                state,
                FHIR_CONCURRENCY="1",
                CLOUD_RUN_EXECUTION="exec-killed",
                FHIR_BATCH_SIZE=batch,
            ),
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "run"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while sum(puts(sim).values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        done_before = sum(puts(sim).values())
        assert 3 <= done_before < 10
        # Cloud Run retries the task (same execution, next attempt): it picks up where it stopped
        run_job(
            sim,
            state,
            tasks=1,
            execution="exec-killed",
            CLOUD_RUN_TASK_ATTEMPT="1",
            FHIR_BATCH_SIZE=batch,
        )
        assert puts(sim) == {f"patient-{i:03d}": 1 for i in range(1, 11)}
        run, _ = run_state(state)
        assert run.status is RunStatus.SUCCEEDED


def test_a_task_killed_mid_shard_leaves_it_to_another_task_once_its_lease_expires(
    tmp_path: Path,
) -> None:
    """Task 0 dies in its shard for good (no retry comes); task 1 syncs its own shard, waits
    for task 0's lease on shard 0 to expire, takes it over and finishes the run."""
    state = tmp_path / "s.db"
    lease = {"LEASE_SECONDS": "4", "CLOUD_RUN_EXECUTION": "exec-lease", "CLOUD_RUN_TASK_COUNT": "2"}
    events: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = events.append  # type: ignore[method-assign]
    with simulator(latency_ms=150, seed=3) as sim:
        env = {
            **os.environ,
            **job_env(sim, state, FHIR_CONCURRENCY="1", FHIR_BATCH_SIZE="0", **lease),
            "CLOUD_RUN_TASK_INDEX": "0",
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "run"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while sum(puts(sim).values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert 2 <= sum(puts(sim).values()) < 6  # shard 0 holds 6 of the 10 rows
        store = SqliteStore(state)
        (held,) = store.shard_states(DATE)
        store.close()
        assert (held.shard, held.owner, held.finished) == (0, 0, False)
        telemetry.configure_logging(stream=io.StringIO())  # INFO and up, as the job logs
        logging.getLogger(LOGGER_NAME).addHandler(handler)
        try:
            config = load_settings(
                job_env(sim, state, FHIR_BATCH_SIZE="0", CLOUD_RUN_TASK_INDEX="1", **lease)
            )
            assert run_task(config) == 0
        finally:
            telemetry.configure_logging(stream=sys.stderr)
        assert puts(sim) == {f"patient-{i:03d}": 1 for i in range(1, 11)}
    run, _ = run_state(state)
    # rows task 0 had applied are found applied (unchanged, or already_applied if recorded)
    assert run.status is RunStatus.SUCCEEDED and sum(run.counts.values()) == 10
    assert set(run.counts) <= {"updated", "unchanged", "already_applied"}
    store = SqliteStore(state)
    assert [(s.shard, s.owner, s.finished) for s in store.shard_states(DATE)] == [
        (0, 1, True),
        (1, 1, True),
    ]
    store.close()
    claims = {
        e.json_fields["shard"]: e  # type: ignore[attr-defined]
        for e in events
        if e.json_fields["event"] == "shard_claimed"  # type: ignore[attr-defined]
    }
    assert claims[1].json_fields["previous_owner"] is None  # type: ignore[attr-defined]
    taken = claims[0]
    assert taken.json_fields["previous_owner"] == 0  # type: ignore[attr-defined]
    assert taken.created >= held.lease_until  # not before task 0's lease ran out
    assert "taken over from task 0, whose lease expired" in taken.getMessage()


def test_a_task_whose_execution_lost_the_date_ends_when_the_winner_finished_between_looks(
    tmp_path: Path,
) -> None:
    """Two executions started together; ours lost (its task 0 stood down) and the winner ran
    and finished between two looks of our task 1, which must end (exit 0, lock_held) rather
    than wait out MANIFEST_TIMEOUT_SECONDS for a manifest nobody writes and fail."""
    state = tmp_path / "s.db"
    env = {
        "CLOUD_RUN_TASK_INDEX": "1",
        "CLOUD_RUN_TASK_COUNT": "2",
        "MANIFEST_TIMEOUT_SECONDS": "30",
    }
    with simulator() as sim:
        config = load_settings(job_env(sim, state, CLOUD_RUN_EXECUTION="exec-b", **env))
        ended: list[tuple[int, float]] = []
        started = time.monotonic()
        task = threading.Thread(
            target=lambda: ended.append((run_task(config), time.monotonic() - started))
        )
        task.start()
        time.sleep(2.0)  # task 1 of exec-b is waiting for a manifest
        winner = SqliteStore(state)  # exec-a's whole run, between two of its looks
        now = time.time()
        winner.acquire_run(DATE, "exec-a", 2, 60, now)
        winner.write_manifest(DATE, "exec-a", {0: [], 1: []}, 0)
        for shard in (0, 1):
            winner.claim_shard(DATE, "exec-a", shard, shard, 60, now)
            winner.finish_shard(DATE, "exec-a", shard, shard, now)
        winner.close()
        task.join(timeout=40)
    assert ended and ended[0][0] == 0 and ended[0][1] < 10, ended
    run, _ = run_state(state)
    assert (run.execution, run.status) == ("exec-a", RunStatus.SUCCEEDED)


def test_two_tasks_as_processes_through_the_cli(tmp_path: Path) -> None:
    with simulator() as sim:
        done = run_cli(
            "run",
            "--date",
            DATE,
            "--sheet",
            str(SAMPLE_SHEET),
            "--fhir-url",
            sim.fhir,
            "--tasks",
            "2",
            "--state",
            str(tmp_path / "s.db"),
            env={"FHIR_API_KEY": API_KEY},
        )
        assert done.returncode == 0, done.stderr
        assert "run 2025-09-23: succeeded" in done.stderr and "updated          10" in done.stderr
        assert "phonesync run 2025-09-23: 2 tasks, execution" in done.stderr
        logs = list((tmp_path / "logs").glob("*.jsonl"))
        assert len(logs) == 2
        for log in logs:
            text = log.read_text()
            for nik in ("3171044203920001", "3578106207900002"):
                assert nik not in text
            assert "081234567890" not in text
            events = [json.loads(line).get("event") for line in text.splitlines()]
            assert "task_finished" in events


@pytest.mark.parametrize(
    ("batch", "posts"),
    [("50", 1), ("auto", 0)],
    ids=["batch-asked-for", "batch-auto"],
)
def test_a_server_without_batch_gets_one_request_per_call(
    tmp_path: Path, batch: str, posts: int
) -> None:
    events: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = events.append  # type: ignore[method-assign]
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        with simulator(batch=False) as sim:
            assert run_job(sim, tmp_path / "s.db", tasks=1, FHIR_BATCH_SIZE=batch) == [0]
    finally:
        logger.removeHandler(handler)
    assert without_last_updated(sim.bundle()) == reference()
    # Asked for batch: one refused Bundle, then per request. Auto: the CapabilityStatement
    # does not list batch, so no Bundle is tried.
    assert sim.state.requests["POST 404"] == posts
    assert sim.state.requests["PUT 200"] == 10 and sim.state.entries == {}
    refusals = [e for e in events if e.json_fields["event"] == "fhir_batch_refused"]  # type: ignore[attr-defined]
    assert len(refusals) == posts  # one warning, not one per row
    assert all(e.levelno == logging.WARNING for e in refusals)


@MODES
def test_a_patient_the_server_refuses_is_that_rows_error_only(tmp_path: Path, batch: str) -> None:
    with simulator() as sim:
        sim.state.refuse_puts("patient-003", 422)
        run_job(sim, tmp_path / "s.db", FHIR_BATCH_SIZE=batch)
        run, outcomes = run_state(tmp_path / "s.db")
        assert run.counts == {"updated": 9, "error": 1}
        assert outcomes[4].status == "error"
        assert outcomes[4].reason == (
            "FHIR rejected the update: PUT Patient update: 422: the server refused this Patient"
        )


def test_a_sheet_without_a_column_ends_every_task_within_seconds(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "last_updated_date,nik_identifier,name,phone\n23-09-2025,3171044203920001,DEWI,0812\n"
    )
    with simulator() as sim:
        started = time.monotonic()
        done = run_cli(
            "run",
            "--date",
            DATE,
            "--sheet",
            str(sheet),
            "--fhir-url",
            sim.fhir,
            "--tasks",
            "2",
            "--state",
            str(tmp_path / "s.db"),
            env={"FHIR_API_KEY": API_KEY},  # MANIFEST_TIMEOUT_SECONDS stays at its 600 s
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert elapsed < 20, f"the tasks took {elapsed:.0f} s to give up"
    assert "run 2025-09-23: failed" in done.stderr and "phone_number" in done.stderr
    assert "task exit codes: [1, 1]" in done.stderr
    (task1,) = (tmp_path / "logs").glob("*-task-1.jsonl")
    stopped = [json.loads(line) for line in task1.read_text().splitlines()]
    (line,) = [e for e in stopped if e.get("event") == "task_stopped"]
    assert line["severity"] == "ERROR" and "phone_number" in line["reason"]


@pytest.mark.parametrize("lookback", ["0", "1"])
def test_lookback_takes_yesterdays_unapplied_rows(tmp_path: Path, lookback: str) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "last_updated_date,nik_identifier,name,phone_number\n"
        "22-09-2025,3171044203920001,DEWI,081234567890\n"  # entered at 23:30 the day before
        "23-09-2025,3578106207900002,MAYA,6285678901234\n"
    )
    with simulator() as sim:
        run_job(sim, tmp_path / "s.db", tasks=1, SHEET_CSV=str(sheet), LOOKBACK_DAYS=lookback)
        assert ("patient-001" in puts(sim)) == (lookback == "1")
        assert "patient-002" in puts(sim)


def test_report_of_a_run_on_a_messy_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.cli import main

    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "last_updated_date,nik_identifier,name,phone_number\n"
        "23-09-2025,3171044203920001,DEWI,0812-0000-0000\n"
        "23-09-2025,3171044203920001,DEWI,0812-1111-1111\n"
        "23-09-2025,3.57811E+15,MAYA,6285678901234\n"
        "31-02-2025,3273044812940003,RINA,082345678901\n"
        "23-09-2025,1275095011890004,LINDA,021-5551234\n"
        "23-09-2025,9999999999999999,NOBODY,081234567890\n"
    )
    logs = io.StringIO()
    telemetry.configure_logging(stream=logs)
    try:
        with simulator() as sim:
            run_job(sim, tmp_path / "s.db", tasks=2, SHEET_CSV=str(sheet))
    finally:
        telemetry.configure_logging(stream=sys.stderr)
    entries = [json.loads(line) for line in logs.getvalue().splitlines()]
    # Rejected rows reach the row_outcome lines the rows metric counts, like synced rows do.
    outcome_lines = {e["row"]: e for e in entries if e.get("event") == "row_outcome"}
    assert {r: e["status"] for r, e in outcome_lines.items() if r in (4, 5, 6)} == {
        4: "invalid_nik",
        5: "invalid_date",
        6: "invalid_phone",
    }
    assert all(outcome_lines[r]["severity"] == "WARNING" for r in (4, 5, 6))
    (finished,) = [e for e in entries if e.get("event") == "run_finished"]
    assert finished["status"] == "needs_action" and finished["severity"] == "WARNING"
    assert finished["rejected"] == {"invalid_date": 1, "invalid_nik": 1, "invalid_phone": 1}
    assert finished["needs_officer"] == 4
    assert main(["status", "--date", DATE, "--state", str(tmp_path / "s.db")]) == 3
    status = capsys.readouterr().out
    for row in (4, 5, 6, 7):
        assert f"row     {row}  " in status
    assert main(["report", "--date", DATE, "--state", str(tmp_path / "s.db")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "row,nik,status,reason,warning,patient_id,waiting_since"
    assert lines[1:] == [
        "2,3171********0001,superseded,row 3 gives a newer number for this NIK,,,",
        "3,3171********0001,updated,mobile phone added,,patient-001,",
        "4,3.57***E+15,invalid_nik,nik_identifier: was turned into a number by the sheet (format the column as plain text and retype the 16 digits),,,",
        "5,3273********0003,invalid_date,last_updated_date: is not a real calendar date,,,",
        "6,1275********0004,invalid_phone,phone_number: is not a mobile number (Indonesian mobiles start with 08 or +62 8); nothing applied for this NIK,,,",
        "7,9999********9999,not_found,no patient in the registry has this NIK,,,",
    ]


def test_a_killed_task_makes_the_local_run_exit_non_zero(tmp_path: Path) -> None:
    """`phonesync run --tasks 2` with one task process killed (SIGKILL): the parent must not
    exit 0 (it once took max(0, -9) == 0 while its own summary said 'running')."""
    execution = f"exec-killed-{os.getpid()}"

    def task_1_pid() -> int | None:
        for proc in Path("/proc").iterdir():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if (
                f"CLOUD_RUN_EXECUTION={execution}".encode() in environ
                and b"CLOUD_RUN_TASK_INDEX=1" in environ
            ):
                return int(proc.name)
        return None

    with simulator(latency_ms=100, seed=1) as sim:
        parent = subprocess.Popen(
            [
                *(sys.executable, "-m", "jobs.cli", "run", "--date", DATE, "--tasks", "2"),
                *("--sheet", str(SAMPLE_SHEET), "--fhir-url", sim.fhir),
                *("--state", str(tmp_path / "s.db"), "--concurrency", "1"),
            ],
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "FHIR_API_KEY": API_KEY,
                "CLOUD_RUN_EXECUTION": execution,
            },
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        pid = None
        while pid is None and time.monotonic() < deadline:
            pid = task_1_pid()
            time.sleep(0.05)
        assert pid is not None, "task 1 never started"
        os.kill(pid, signal.SIGKILL)
        _, err = parent.communicate(timeout=60)
    assert parent.returncode == 128 + signal.SIGKILL, err
    assert "-9" in err  # the summary lists the task exit codes


def test_the_run_summary_says_when_the_sheet_had_no_rows() -> None:
    run = RunState(DATE, "exec-1", RunStatus.SUCCEEDED, 1, 0.0, 0.0, finished_at=1.0)
    assert summary(run, [0]) == "run 2025-09-23: succeeded\n  no rows in the sheet"
    failed = dataclasses.replace(run, status=RunStatus.FAILED, reason="sheet file not found: x")
    assert summary(failed, [1]) == (
        "run 2025-09-23: failed (sheet file not found: x)\n  task exit codes: [1]"
    )
