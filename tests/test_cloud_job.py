"""The production job: Firestore lock and ledger, Pub/Sub failures, N tasks — on the emulators.

Every Google service goes through its real client against the real emulator; the Sheet is read
through the Sheets API route of the simulator; FHIR is the simulator.
"""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1

from common import telemetry
from common.config import load_settings
from common.drift import DriftClass, DriftRow, ReconcileRun
from common.failures import FailureMessage, topic_path
from common.store import RunStatus
from common.store._firestore import FirestoreStore
from jobs.task import run_task
from sim.app import capability_statement
from tests.simulator import (
    API_KEY,
    SAMPLE_SHEET,
    RunningSim,
    run_cli,
    sample,
    simulator,
    without_last_updated,
)

DATE = "2025-09-23"
ROOT = Path(__file__).resolve().parent.parent
TOPIC = "phonesync-failures"


@pytest.fixture
def cloud(gcp_project: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Topic + subscription on the emulator; the env a Cloud Run task of this project gets."""
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.create_topic(name=topic_path(gcp_project, TOPIC))
    subscriber.create_subscription(
        name=subscriber.subscription_path(gcp_project, "replay"),
        topic=topic_path(gcp_project, TOPIC),
    )
    yield {
        "SHEETS_ACCESS_TOKEN": "test-token",
        "STATE_BACKEND": "firestore",
        "GOOGLE_CLOUD_PROJECT": gcp_project,
        "FAILURE_TOPIC": TOPIC,
        "FHIR_API_KEY": API_KEY,
        "LEDGER_KEY": "test-ledger-key",
        "SHEET_ID": "sheet-1",
        "SHEET_RANGE": "Sheet1!A:D",
        "RUN_DATE": DATE,
        "FHIR_BACKOFF_SECONDS": "0.01",
        "MANIFEST_TIMEOUT_SECONDS": "30",
    }


def sim_with_sheet(**options: Any) -> Any:
    return simulator(sheet_csv=SAMPLE_SHEET.read_text(), **options)


def task_env(
    cloud: dict[str, str], sim: RunningSim, index: int, count: int, execution: str, **extra: str
) -> dict[str, str]:
    return {
        **cloud,
        "FHIR_BASE_URL": sim.fhir,
        "SHEETS_API_URL": sim.url,
        "CLOUD_RUN_TASK_INDEX": str(index),
        "CLOUD_RUN_TASK_COUNT": str(count),
        "CLOUD_RUN_EXECUTION": execution,
        **extra,
    }


def run_parallel(envs: list[dict[str, str]]) -> list[Any]:
    """Tasks as Cloud Run runs them: at the same time."""
    codes: list[Any] = [-1] * len(envs)

    def one(i: int) -> None:
        try:
            codes[i] = run_task(load_settings(envs[i]))
        except Exception as exc:  # shown in the assertion instead of a bare -1
            codes[i] = repr(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(envs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return codes


def execute(
    cloud: dict[str, str], sim: RunningSim, tasks: int, execution: str, **extra: str
) -> list[int]:
    return run_parallel([task_env(cloud, sim, i, tasks, execution, **extra) for i in range(tasks)])


def run_doc(project: str) -> Any:
    store = FirestoreStore(project)
    try:
        return store.get_run(DATE)
    finally:
        store.close()


def all_one_put(sim: RunningSim) -> bool:
    return dict(sim.state.puts_by_patient) == {f"patient-{i:03d}": 1 for i in range(1, 11)}


def test_four_tasks_sync_the_sheet_and_close_the_run(
    cloud: dict[str, str], gcp_project: str
) -> None:
    with sim_with_sheet() as sim:
        assert execute(cloud, sim, 4, "exec-1") == [0, 0, 0, 0]
        assert without_last_updated(sim.bundle()) == without_last_updated(
            sample("patients_after_phone_update")
        )
        run = run_doc(gcp_project)
        assert (run.status, run.counts, run.task_count, run.total_rows) == (
            RunStatus.SUCCEEDED,
            {"updated": 10},
            4,
            10,
        )
        store = FirestoreStore(gcp_project)
        progress = store.shard_states(DATE)
        store.close()
        assert [p.finished for p in progress] == [True] * 4
        assert sum(p.done for p in progress) == 10


def test_a_full_rerun_makes_zero_puts(cloud: dict[str, str], gcp_project: str) -> None:
    with sim_with_sheet() as sim:
        execute(cloud, sim, 2, "exec-1")
        sim.state.reset_stats()
        assert execute(cloud, sim, 2, "exec-2") == [0, 0]
        # No request for a row; task 0's check of the server is the one request.
        assert sim.state.stats() == {
            "requests": {"GET metadata": 1},
            "entries": {},
            "puts_by_patient": {},
        }
        assert run_doc(gcp_project).counts == {"already_applied": 10}


def test_two_executions_started_together_only_one_syncs(
    cloud: dict[str, str], gcp_project: str
) -> None:
    with sim_with_sheet(latency_ms=20) as sim:
        envs = [
            task_env(cloud, sim, i, 2, execution)
            for execution in ("exec-a", "exec-b")
            for i in range(2)
        ]
        assert run_parallel(envs) == [0, 0, 0, 0]  # the loser exits 0: overlap is not a failure
        assert all_one_put(sim)
        run = run_doc(gcp_project)
        assert run.status is RunStatus.SUCCEEDED and run.execution in ("exec-a", "exec-b")


def test_a_task_killed_mid_shard_and_retried_puts_each_patient_once(
    cloud: dict[str, str], gcp_project: str
) -> None:
    with sim_with_sheet(latency_ms=150, seed=5) as sim:
        # Batch mode, Bundles of 2 rows: the kill lands between Bundles, as it would per row.
        env = {
            **os.environ,
            **task_env(cloud, sim, 0, 1, "exec-k", FHIR_CONCURRENCY="1", FHIR_BATCH_SIZE="2"),
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "run"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while sum(sim.state.puts_by_patient.values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert 3 <= sum(sim.state.puts_by_patient.values()) < 10
        # Cloud Run retries the task: same execution, next attempt
        assert execute(cloud, sim, 1, "exec-k", CLOUD_RUN_TASK_ATTEMPT="1") == [0]
        assert all_one_put(sim)
        assert run_doc(gcp_project).status is RunStatus.SUCCEEDED


def test_a_fhir_outage_defers_rows_and_publishes_them(
    cloud: dict[str, str], gcp_project: str
) -> None:
    with sim_with_sheet() as sim:
        sim.state.set_down(True)
        assert execute(
            cloud, sim, 2, "exec-1", FHIR_DEADLINE_SECONDS="0.5", FHIR_MAX_ATTEMPTS="3"
        ) == [0, 0]
        run = run_doc(gcp_project)
        assert run.status is RunStatus.PARTIAL and run.counts == {"deferred": 10}
        subscriber = pubsub_v1.SubscriberClient()
        pulled = subscriber.pull(
            subscription=subscriber.subscription_path(gcp_project, "replay"),
            max_messages=50,
            timeout=10,
        ).received_messages
        messages = sorted(
            (FailureMessage.from_json(m.message.data) for m in pulled), key=lambda m: m.row
        )
        assert [m.row for m in messages] == list(range(2, 12))
        assert messages[0].nik == "3171044203920001" and messages[0].phone == "+6281234567890"
        assert all(m.run_date == DATE and m.execution == "exec-1" for m in messages)


def test_the_sheets_api_is_retried_and_a_dead_sheet_fails_the_run(
    cloud: dict[str, str], gcp_project: str
) -> None:
    with sim_with_sheet() as sim:
        sim.state.fail_next_sheet(2, 503)
        assert execute(cloud, sim, 1, "exec-1") == [0]
        assert run_doc(gcp_project).status is RunStatus.SUCCEEDED
    with simulator() as sim:  # no sheet behind the API: 404
        env = task_env({**cloud, "RUN_DATE": "2025-09-24"}, sim, 0, 1, "exec-2")
        assert run_task(load_settings(env)) == 1  # the run cannot proceed: Cloud Run retries task 0
        store = FirestoreStore(gcp_project)
        failed = store.get_run("2025-09-24")
        store.close()
        assert failed.status is RunStatus.FAILED and "SHEET_ID" in failed.reason


def test_a_wrong_fhir_server_fails_the_run_before_the_sheet_and_a_retry_recovers(
    cloud: dict[str, str], gcp_project: str
) -> None:
    with sim_with_sheet() as sim:
        sim.state.capability_statement = {
            **capability_statement(batch=True),
            "fhirVersion": "3.0.2",
        }
        assert execute(cloud, sim, 2, "exec-1") == [1, 1]  # task 1 stopped by task 0's verdict
        run = run_doc(gcp_project)
        assert run.status is RunStatus.FAILED
        assert run.reason == (
            f"FHIR_BASE_URL {sim.fhir} is not a FHIR R4 server with Patient search and a write (update or patch)"
            " (GET metadata: 200: fhirVersion is 3.0.2, not R4 (4.0.x))"
        )
        assert sim.state.sheet_reads == [] and sim.state.stats()["requests"] == {"GET metadata": 1}
        store = FirestoreStore(gcp_project)
        try:
            assert store.outcomes(DATE) == [] and store.read_shard(DATE, "exec-1", 0) is None
        finally:
            store.close()
        # The registry answers as R4 again: task 0's retry revives the run and, task 1's
        # retry not there yet, syncs both shards; task 1's retry finds them finished. (Had
        # task 1 used up its retries meanwhile: the next test, docs/decisions.md record 81.)
        sim.state.capability_statement = None
        for index in (0, 1):
            env = task_env(cloud, sim, index, 2, "exec-1", CLOUD_RUN_TASK_ATTEMPT="1")
            assert run_parallel([env]) == [0]
        assert run_doc(gcp_project).status is RunStatus.SUCCEEDED and all_one_put(sim)


def test_task_0_revived_after_the_others_gave_up_syncs_every_shard(
    cloud: dict[str, str], gcp_project: str
) -> None:
    """The Sheet is not shared with the job yet (403) for task 0's first two attempts. The
    other tasks stop at once each time and use up their retries (max_retries 3 here; terraform's default is 1);
    task 0's third attempt reads the sheet, syncs every shard and closes the run."""
    logs = io.StringIO()
    telemetry.configure_logging(stream=logs)
    try:
        with sim_with_sheet() as sim:
            sim.state.fail_next_sheet(2, 403)
            for attempt in (0, 1):  # every task fails: task 0 its run, the others stop
                envs = [
                    task_env(cloud, sim, i, 3, "exec-1", CLOUD_RUN_TASK_ATTEMPT=str(attempt))
                    for i in range(3)
                ]
                assert run_parallel(envs) == [1, 1, 1]
            for attempt in (2, 3):  # the last retries of tasks 1 and 2: the run still failed
                envs = [
                    task_env(cloud, sim, i, 3, "exec-1", CLOUD_RUN_TASK_ATTEMPT=str(attempt))
                    for i in (1, 2)
                ]
                assert run_parallel(envs) == [1, 1]
            assert run_doc(gcp_project).status is RunStatus.FAILED
            revived = task_env(cloud, sim, 0, 3, "exec-1", CLOUD_RUN_TASK_ATTEMPT="2")
            assert run_parallel([revived]) == [0]
            assert all_one_put(sim)  # every row once, whoever's shard it was
    finally:
        telemetry.configure_logging(stream=sys.stderr)
    run = run_doc(gcp_project)
    assert (run.status, run.counts, run.total_rows) == (RunStatus.SUCCEEDED, {"updated": 10}, 10)
    store = FirestoreStore(gcp_project)
    shards = store.shard_states(DATE)
    store.close()
    assert [(s.shard, s.owner, s.finished) for s in shards] == [
        (0, 0, True),
        (1, 0, True),
        (2, 0, True),
    ]
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    events = Counter(line.get("event") for line in lines)
    # one failed run, counted once by the runs metric however often task 0 failed it
    assert (events["run_failed"], events["run_failed_again"], events["task_stopped"]) == (1, 1, 8)
    (again,) = [line for line in lines if line.get("event") == "run_failed_again"]
    assert again["severity"] == "WARNING" and again["failures"] == 2 and "403" in again["reason"]
    assert events["run_finished"] == 1 and events["shard_claimed"] == 3


def test_local_multi_task_on_firestore_equals_sqlite(cloud: dict[str, str], tmp_path: Path) -> None:
    bundles = []
    for state in ("firestore", str(tmp_path / "s.db")):
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
                "4",
                "--state",
                state,
                env={k: v for k, v in cloud.items() if k != "SHEET_ID"},
            )
            assert done.returncode == 0, done.stderr
            assert "run 2025-09-23: succeeded" in done.stderr
            bundles.append(without_last_updated(sim.bundle()))
    assert bundles[0] == bundles[1] == without_last_updated(sample("patients_after_phone_update"))


def test_the_runbooks_commands_work_with_the_runbooks_own_setup(
    cloud: dict[str, str], gcp_project: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every `phonesync` command of docs/runbook.md's cloud blocks, run as written (with
    $DATE) against a partial run in Firestore, with only the runbook's `export` block set: no
    FHIR settings."""
    from jobs.cli import main
    from tests.test_docs_run import CLOUD_VALUES, blocks, phonesync_commands
    from tests.test_docs_run import ROOT as DOCS_ROOT

    with sim_with_sheet() as sim:
        sim.state.set_down(True)
        execute(cloud, sim, 1, "exec-1", FHIR_DEADLINE_SECONDS="0.5", FHIR_MAX_ATTEMPTS="2")
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(gcp_project, "replay")
    first = subscriber.pull(subscription=subscription, max_messages=50, timeout=10)
    subscriber.acknowledge(
        subscription=subscription, ack_ids=[m.ack_id for m in first.received_messages]
    )
    for name in [*cloud, "FHIR_BASE_URL", "FHIR_API_KEY_SECRET", "LEDGER_KEY_SECRET"]:
        monkeypatch.delenv(name, raising=False)
    # the runbook's setup block, as written
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", gcp_project)
    monkeypatch.setenv("STATE_BACKEND", "firestore")
    monkeypatch.setenv("FAILURE_TOPIC", TOPIC)
    runbook = blocks(DOCS_ROOT / "docs" / "runbook.md")
    assert "FAILURE_TOPIC=phonesync-failures" in runbook[0].text and TOPIC == "phonesync-failures"
    # the blocks for the project (a local block tries a command on the simulator first)
    commands = [c for b in runbook if b.kind == "cloud" for c in phonesync_commands(b.text)]
    # a weekly reconcile on record, for `drift` (its execution: the value the docs test gives
    # $EXECUTION); `drift --out` writes into the current folder
    monkeypatch.chdir(tmp_path)
    store = FirestoreStore(gcp_project)
    try:
        row = DriftRow(5, "3171********0001", DriftClass.MISSING, DATE, "patient-004", "lost")
        weekly = ReconcileRun(CLOUD_VALUES.get("EXECUTION", "X"), DATE, DATE, 1, time.time())
        assert store.record_reconcile(weekly, 0, {"missing": 1}, [row], time.time()) is not None
    finally:
        store.close()
    expected = {"status": 4, "report": 0, "replay": 0, "drift": 0}  # 4: partial (rows deferred)
    assert {c[0] for c in commands} == set(expected)
    for command in commands:
        assert main(command) == expected[command[0]], command
    republished = subscriber.pull(subscription=subscription, max_messages=50, timeout=10)
    rows = sorted(
        FailureMessage.from_json(m.message.data).row for m in republished.received_messages
    )
    assert rows == list(range(2, 12))  # `replay --via pubsub` re-published the deferred rows
