"""The log-based metrics of terraform/monitoring.tf against the lines the job really writes.

`phonesync run --tasks 2` runs as Cloud Run would start it (its task processes' stdout lands in
the state folder's logs/), for a succeeded run with FHIR retries, a partial run whose report tab
cannot be written, a run that cannot start (and Cloud Run's retry of its task 0, which fails it
again), a task with a bad configuration, a night whose window holds no row (dates typed with
the wrong year) and the next night after the partial one, which finds it still partial; the
replay function handles one deferred row and drops a malformed message; Cloud Scheduler's
attempts are lines of the shape Google documents. Each line becomes the LogEntry Cloud Run
makes of it, and every `google_logging_metric` filter and extractor runs on them
(tests/gcp_rules). What each metric must count comes from the run's own record (the store),
not from the filters.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from common import telemetry
from common.drift import DRIFT, DriftClass, DriftRow
from common.failures import FailureMessage
from common.outcomes import NEEDS_OFFICER, RowOutcome, Status
from common.store import RunState, RunStatus, SqliteStore
from common.unsettled import LEFT_AFTER_SECONDS
from tests.gcp_rules.logging_query import QuerySyntaxError, extractor, log_entry, parse
from tests.gcp_rules.monitoring import label_values
from tests.gcp_rules.terraform import Config
from tests.simulator import API_KEY, SAMPLE_SHEET, RunningSim, run_cli, sample, simulator
from tests.test_missed_nights import SHEET as NIGHTS_CSV
from tests.test_officer_report import MESSY_SHEET

# Slow (~40 s): the captures are seven whole runs. Not in scripts/test-fast.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "google_rules"
DATE = "2025-09-23"
NEXT_DATE = "2025-09-24"
SHIPPED = Config.read(ROOT / "terraform", {"project_id": "p"})
JOB = {
    "type": "cloud_run_job",
    "labels": {"job_name": SHIPPED.variable("job_name"), "location": "asia-southeast2"},
}
FUNCTION = {
    "type": "cloud_run_revision",
    "labels": {"service_name": "phonesync-replay", "location": "asia-southeast2"},
}
MAX_RUN_SECONDS = SHIPPED.variable("max_run_minutes") * 60
#: Rows dated 22- to 25-09 (tests/test_missed_nights.py), one with a phone an officer must fix.
NIGHTS_SHEET = NIGHTS_CSV.replace("081200000024", "0812-x")
#: Rows decided from the sheet that need nobody: recorded, not logged (docs/decisions.md, record 55).
UNLOGGED = {Status.SUPERSEDED, Status.OTHER_DATE}


@dataclass
class Capture:
    name: str
    entries: list[dict[str, Any]]
    run: RunState | None = None
    outcomes: list[RowOutcome] = field(default_factory=list)
    fhir_errors: Counter[str] = field(default_factory=Counter)
    #: Who wrote the row_outcome lines: the job, or the replay function.
    source: str = "job"
    #: Messages the replay function dropped as not planned by their run.
    malformed: int = 0
    #: The drift rows a reconcile recorded.
    drift: list[DriftRow] = field(default_factory=list)
    #: Earlier dates whose runs were left partial when this run ended (from the store).
    unsettled: list[str] = field(default_factory=list)
    #: Cloud Scheduler attempts that failed to start the job.
    scheduler_failures: int = 0


def _job_entries(logs: Path) -> list[dict[str, Any]]:
    entries = []
    for log in sorted(logs.glob("*.jsonl")):
        match = re.fullmatch(r"(.+)-task-(\d+)\.jsonl", log.name)
        assert match, log
        labels = {
            "run.googleapis.com/execution_name": match.group(1),
            "run.googleapis.com/task_index": match.group(2),
            "run.googleapis.com/task_attempt": "0",
        }
        entries += [log_entry(line, JOB, labels) for line in log.read_text().splitlines()]
    return entries


def _job_env(state: Path, name: str, sim: RunningSim, sheet: Path, **env: str) -> dict[str, str]:
    return {
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "SHEET_CSV": str(sheet),
        "RUN_DATE": DATE,
        "STATE_PATH": str(state),
        "CLOUD_RUN_EXECUTION": f"{name}-exec",
        "FHIR_BACKOFF_SECONDS": "0.01",
        "FHIR_TIMEOUT_SECONDS": "2",
        **env,
    }


def _job_run(
    folder: Path,
    name: str,
    sim: RunningSim,
    sheet: Path,
    *,
    run_date: str = DATE,
    state_from: Path | None = None,
    **env: str,
) -> tuple[Capture, Path]:
    """``phonesync run --tasks 2`` of ``run_date`` in a state of its own (a copy of
    ``state_from``, when given: an earlier night's)."""
    state = folder / name / "s.db"
    state.parent.mkdir(parents=True)
    if state_from is not None:  # SQLite's own copy: the latest writes may be in its WAL
        with sqlite3.connect(state_from) as source, sqlite3.connect(state) as copy:
            source.backup(copy)
    env = {"RUN_DATE": run_date, **env}
    done = run_cli("run", "--tasks", "2", env=_job_env(state, name, sim, sheet, **env))
    assert "Traceback" not in done.stderr, done.stderr
    store = SqliteStore(state)
    try:
        run, outcomes = store.get_run(run_date), store.outcomes(run_date)
    finally:
        store.close()
    # The client retries 408, 429 and 5xx answers (common/fhir): one fhir_retry line each.
    answered = (key.split()[-1] for key, n in sim.state.requests.items() for _ in range(n))
    errors = Counter(s for s in answered if s.isdigit() and (s in ("408", "429") or s >= "500"))
    return Capture(name, _job_entries(state.parent / "logs"), run, outcomes, errors), state


def _retry_task_0(capture: Capture, state: Path, sim: RunningSim, sheet: Path) -> None:
    """Cloud Run's retry of the run's task 0 (attempt 1), as a process of its own; its lines
    join the capture (the run is the same: counted once)."""
    env = {
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_COUNT": "2",
        "CLOUD_RUN_TASK_ATTEMPT": "1",
    }
    done = run_cli("run", env=_job_env(state, capture.name, sim, sheet, **env))
    assert "Traceback" not in done.stderr, done.stderr
    labels = {
        "run.googleapis.com/execution_name": f"{capture.name}-exec",
        "run.googleapis.com/task_index": "0",
        "run.googleapis.com/task_attempt": "1",
    }
    capture.entries += [log_entry(line, JOB, labels) for line in done.stdout.splitlines()]
    store = SqliteStore(state)
    try:
        capture.run = store.get_run(DATE)
    finally:
        store.close()


def _replay(state: Path, sim: RunningSim) -> Capture:
    """The replay function (functions-framework, in process) applying one deferred row, then
    dropping a message for a row its run never planned (``replay_malformed``)."""
    from functions_framework import create_app

    applied = FailureMessage(
        run_date=DATE,
        execution="partial-exec",
        row=2,
        nik="3171044203920001",
        phone="+6281234567890",
        reason="FHIR refused our credentials",
        attempts=1,
        sheet_date=DATE,
    )
    unplanned = dataclasses.replace(applied, row=99)
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "FHIR_BASE_URL": sim.fhir,
            "FHIR_API_KEY": API_KEY,
            "STATE_PATH": str(state),
            "FHIR_BACKOFF_SECONDS": "0.01",
        }.items():
            env.setenv(key, value)
        app = create_app(
            target="replay",
            source=str(ROOT / "functions/replay/main.py"),
            signature_type="cloudevent",
        )
        logs = _Lines()
        telemetry.configure_logging(stream=logs)
        try:
            for number, message in enumerate((applied, unplanned)):
                data = base64.b64encode(message.to_json()).decode()
                response = app.test_client().post(
                    "/",
                    json={"message": {"data": data, "messageId": f"m-{number}"}},
                    headers={
                        "ce-id": f"e-{number}",
                        "ce-source": "//pubsub.googleapis.com/projects/p/topics/phonesync-failures",
                        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                        "ce-specversion": "1.0",
                    },
                )
                assert response.status_code == 200
        finally:
            telemetry.configure_logging(stream=sys.stderr)
            telemetry.reset_context()
    store = SqliteStore(state)
    try:
        replayed = [o for o in store.outcomes(DATE) if o.row == applied.row]
    finally:
        store.close()
    assert len(replayed) == 1  # stale: the message (no read stamp) is older than the run's read
    entries = [log_entry(line, FUNCTION, {}) for line in logs.lines()]
    return Capture("replay", entries, outcomes=replayed, source="replay", malformed=1)


def _reconcile(folder: Path) -> Capture:
    """A weekly reconcile as Cloud Run runs it (the job's image, `reconcile` as its arguments)
    against a registry that lost numbers: one patient holds another number, one is gone, the
    rest have none."""
    patients = sample()
    patients[0]["telecom"] = [{"system": "phone", "use": "mobile", "value": "081399990001"}]
    state = folder / "reconcile" / "s.db"
    state.parent.mkdir(parents=True)
    with simulator(patients[:-1]) as sim:
        done = run_cli(
            "reconcile",
            "--since",
            DATE,
            "--until",
            DATE,
            env={
                "CLOUD_RUN_JOB": "phonesync",
                "CLOUD_RUN_EXECUTION": "reconcile-exec",
                "FHIR_BASE_URL": sim.fhir,
                "FHIR_API_KEY": API_KEY,
                "SHEET_CSV": str(SAMPLE_SHEET),
                "STATE_PATH": str(state),
            },
        )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    store = SqliteStore(state)
    try:
        drift = store.drift_rows("reconcile-exec")
    finally:
        store.close()
    labels = {
        "run.googleapis.com/execution_name": "reconcile-exec",
        "run.googleapis.com/task_index": "0",
    }
    entries = [log_entry(line, JOB, labels) for line in done.stdout.splitlines()]
    return Capture("reconcile", entries, drift=drift)


class _Lines:
    """A text stream keeping what is written, as a container's stdout would."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return self.text.splitlines()


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Capture]:
    folder = tmp_path_factory.mktemp("runs")
    messy = folder / "messy.csv"
    messy.write_text(MESSY_SHEET)
    out = []
    with simulator() as sim:  # per-row requests: each 503 / 429 answered is one retry
        sim.state.fail_next(2, 503)
        sim.state.fail_next(1, 429)
        succeeded, _ = _job_run(folder, "succeeded", sim, SAMPLE_SHEET, FHIR_BATCH_SIZE="0")
        out.append(succeeded)
    with simulator() as sim:  # a wrong key defers every row; the report tab's write fails
        sim.state.fail_next_sheet(1, 403)
        partial, state = _job_run(
            folder,
            "partial",
            sim,
            messy,
            FHIR_API_KEY="wrong",
            SHEETS_API_URL=sim.url,
            SHEETS_ACCESS_TOKEN="test-token",
            REPORT_SHEET_ID="officers-sheet",
        )
        out.append(partial)
        out.append(_replay(state, sim))
        # The next night: the partial run of DATE ended yesterday, and nobody replayed it.
        _ended_hours_ago(state, DATE, 21)
        next_night, night_state = _job_run(
            folder, "next-night", sim, SAMPLE_SHEET, run_date=NEXT_DATE, state_from=state
        )
        next_night.unsettled = _unsettled(night_state, NEXT_DATE)
        out.append(next_night)
    with simulator() as sim:  # the sheet is missing, and still missing when task 0 is retried
        failed, state = _job_run(folder, "failed", sim, folder / "no-such-sheet.csv")
        _retry_task_0(failed, state, sim, folder / "no-such-sheet.csv")
        out.append(failed)
    wrong_year = folder / "wrong-year.csv"  # the officers typed 2024 for 2025
    wrong_year.write_text(SAMPLE_SHEET.read_text().replace("-2025,", "-2024,"))
    with simulator() as sim:
        # 2025-09-22 and 2025-09-23 are a Monday and a Tuesday: quiet on weekends only
        empty, _ = _job_run(folder, "empty-window", sim, wrong_year, QUIET_WEEKDAYS="sat,sun")
        out.append(empty)
    with simulator() as sim:  # missed nights: the 23rd left behind, then caught up
        nights = folder / "nights.csv"
        nights.write_text(NIGHTS_SHEET)
        night_state: Path | None = None
        for name, run_date, more in (
            ("night-22", "2025-09-22", {}),
            ("left-behind", "2025-09-25", {"CATCH_UP_DAYS": "1"}),
            ("caught-up", "2025-09-26", {}),
        ):
            capture, night_state = _job_run(
                folder, name, sim, nights, run_date=run_date, state_from=night_state, **more
            )
            out.append(capture)
    out.append(_reconcile(folder))
    cloud_run = {"CLOUD_RUN_JOB": "phonesync", "CLOUD_RUN_EXECUTION": "bad-config"}
    bad = run_cli("run", env={"STATE_BACKEND": "nowhere", "FHIR_BASE_URL": "", **cloud_run})
    labels = {
        "run.googleapis.com/execution_name": "bad-config",
        "run.googleapis.com/task_index": "0",
    }
    out.append(
        Capture("bad-config", [log_entry(ln, JOB, labels) for ln in bad.stdout.splitlines()])
    )
    out.append(_scheduler_attempts())
    return out


def _ended_hours_ago(state: Path, run_date: str, hours: float) -> None:
    """Move the end of ``run_date``'s run back by ``hours``: it ended on an earlier night."""
    with sqlite3.connect(state) as db:
        db.execute(
            "UPDATE runs SET finished_at = finished_at - ?, started_at = started_at - ?"
            " WHERE run_date = ?",
            (hours * 3600, hours * 3600, run_date),
        )


def _unsettled(state: Path, run_date: str) -> list[str]:
    """The earlier runs the night of ``run_date`` must report, read off the store's record:
    partial, and ended a day before (LEFT_AFTER_SECONDS) the night's run did."""
    with sqlite3.connect(state) as db:
        (night_ended,) = db.execute(
            "SELECT finished_at FROM runs WHERE run_date = ?", (run_date,)
        ).fetchone()
        rows = db.execute(
            "SELECT run_date FROM runs WHERE run_date < ? AND status = 'partial'"
            " AND finished_at <= ? ORDER BY run_date DESC",
            (run_date, night_ended - LEFT_AFTER_SECONDS),
        ).fetchall()
    return [date for (date,) in rows]


SCHEDULER = {
    "type": "cloud_scheduler_job",
    "labels": {"job_id": "phonesync-nightly", "location": "asia-southeast2", "project_id": "p"},
}


def _scheduler_attempts() -> Capture:
    """Cloud Scheduler's log of three nights' attempts, shaped as Google documents its
    AttemptStarted / AttemptFinished entries (cloud.google.com/scheduler/docs/view-logs):
    the Run API refusing the scheduler's account once, and another scheduler job's failure
    (the reconcile schedule's) that is not the nightly job's."""
    finished = "type.googleapis.com/google.cloud.scheduler.logging.AttemptFinished"
    started = "type.googleapis.com/google.cloud.scheduler.logging.AttemptStarted"
    url = "https://run.googleapis.com/v2/projects/p/locations/asia-southeast2/jobs/phonesync:run"

    def attempt(kind: str, severity: str, status: str | None, job: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "@type": kind,
            "jobName": f"projects/p/locations/asia-southeast2/jobs/{job}",
            "targetType": "HTTP",
            "url": url,
        }
        entry: dict[str, Any] = {
            "resource": {**SCHEDULER, "labels": {**SCHEDULER["labels"], "job_id": job}},
            "severity": severity,
            "logName": "projects/p/logs/cloudscheduler.googleapis.com%2Fexecutions",
            "jsonPayload": payload,
        }
        if status is not None:
            payload["status"] = status
            entry["httpRequest"] = {"status": 403 if status == "PERMISSION_DENIED" else 200}
        return entry

    entries = [
        attempt(started, "INFO", None, "phonesync-nightly"),
        attempt(finished, "INFO", "OK", "phonesync-nightly"),
        attempt(started, "INFO", None, "phonesync-nightly"),
        attempt(finished, "ERROR", "PERMISSION_DENIED", "phonesync-nightly"),
        attempt(finished, "ERROR", "PERMISSION_DENIED", "phonesync-reconcile"),
    ]
    return Capture("scheduler", entries, scheduler_failures=1)


def evaluate(config: Config, entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per log-based metric (by name): for each entry it counts, its labels and value."""
    out: dict[str, list[dict[str, Any]]] = {}
    for body in config.resources("google_logging_metric").values():
        matches = parse(config.resolve(body["filter"]))
        labels = {k: extractor(v) for k, v in body.get("label_extractors", {}).items()}
        value = extractor(body["value_extractor"]) if "value_extractor" in body else None
        out[body["name"]] = [
            {
                **{k: x(e) for k, x in labels.items()},
                **({"value": _number(value(e))} if value else {}),
            }
            for e in entries
            if matches(e)
        ]
    return out


def _number(text: str | None) -> float | str | None:
    """A distribution's value: Logging parses the extracted text as a number."""
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def expected(capture: Capture) -> dict[str, Counter[tuple[tuple[str, Any], ...]]]:
    """What each metric must count in this capture, from the run's record."""
    run = capture.run
    ended = run is not None and run.status is not RunStatus.RUNNING
    finished = ended and run is not None and run.status is not RunStatus.FAILED
    report_failed = run is not None and (run.report or "").startswith("failed")
    in_window = sum(n for s, n in (run.counts if run else {}).items() if s != "other_date")
    empty_window = finished and run is not None and in_window == 0  # on working days
    too_long = finished and run is not None and _duration(run) > MAX_RUN_SECONDS
    waiting = [o for o in capture.outcomes if o.status in NEEDS_OFFICER]
    return {
        "phonesync_rows": Counter(
            (("source", capture.source), ("status", o.status.value))
            for o in capture.outcomes
            if o.status not in UNLOGGED
        ),
        "phonesync_replay_malformed": Counter([()] * capture.malformed),
        "phonesync_runs": Counter([(("status", run.status.value),)] if ended and run else []),
        "phonesync_run_duration": Counter(
            [(("value", _duration(run)),)] if finished and run else []
        ),
        "phonesync_fhir_retries": Counter(
            {(("http_status", code),): n for code, n in capture.fhir_errors.items()}
        ),
        "phonesync_report_failures": Counter([()] if report_failed else []),
        "phonesync_reconcile_drift": Counter(
            (("class", r.drift.value),)
            for r in capture.drift
            if r.drift in DRIFT or r.drift is DriftClass.UNCHECKED
        ),
        "phonesync_empty_windows": Counter([()] if empty_window else []),
        "phonesync_runs_unsettled": Counter([()] * len(capture.unsettled)),
        "phonesync_runs_too_long": Counter([()] if too_long else []),
        "phonesync_scheduler_failures": Counter([()] * capture.scheduler_failures),
        "phonesync_nights_synced": Counter([()] if finished and run and not run.unsynced else []),
        "phonesync_officer_rows_waiting": Counter(
            [(("value", float(len(waiting))),)] if finished else []
        ),
        "phonesync_officer_oldest_wait": Counter(
            [(("value", float(_oldest_wait(run, waiting))),)] if finished and run else []
        ),
    }


def _oldest_wait(run: RunState, waiting: list[RowOutcome]) -> int:
    """Days the run's oldest row waiting on an officer has waited (0: none, or new tonight)."""
    today = date.fromisoformat(run.run_date)
    return (
        max((today - date.fromisoformat(o.since or run.run_date)).days for o in waiting)
        if waiting
        else 0
    )


def _duration(run: RunState) -> float:
    return round((run.finished_at or 0) - run.started_at, 1)


def metric_problems(config: Config, captures: list[Capture]) -> list[str]:
    """Each metric of ``config`` counts exactly the lines it is meant to, with their labels."""
    problems = []
    for capture in captures:
        counted = evaluate(config, capture.entries)
        wanted = expected(capture)
        for name, points in counted.items():
            if name not in wanted:
                problems.append(f"{name}: no expectation here; say what it must count")
                continue
            got = Counter(tuple(sorted(p.items())) for p in points)
            if got != wanted[name]:
                problems.append(
                    f"{capture.name}: {name} counts {dict(got)}, not {dict(wanted[name])}"
                )
    return problems


def test_the_captures_cover_every_kind_of_line_the_metrics_count(captures: list[Capture]) -> None:
    """Guards the guard: each run ended as meant and wrote the lines of its kind."""
    by_name = {c.name: c for c in captures}
    assert [c.run.status if c.run else None for c in captures] == [
        RunStatus.SUCCEEDED,
        RunStatus.PARTIAL,
        None,
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.SUCCEEDED,
        RunStatus.SUCCEEDED,
        RunStatus.NEEDS_ACTION,
        RunStatus.NEEDS_ACTION,
        None,  # the reconcile
        None,
        None,
    ]
    assert by_name["next-night"].unsettled == [DATE]
    empty = by_name["empty-window"].run
    assert empty is not None and empty.counts == {"other_date": 10}
    left, caught = by_name["left-behind"].run, by_name["caught-up"].run
    assert left is not None and (left.caught_up, left.unsynced) == (["2025-09-24"], ["2025-09-23"])
    assert caught is not None and (caught.caught_up, caught.unsynced) == (["2025-09-23"], [])
    waited = [o for o in by_name["caught-up"].outcomes if o.status is Status.INVALID_PHONE]
    assert [o.since for o in waited] == ["2025-09-25"]  # a day's wait: the oldest-wait metric
    assert by_name["succeeded"].fhir_errors == {"503": 2, "429": 1}
    statuses = {o.status for o in by_name["partial"].outcomes}
    assert {
        Status.DEFERRED,
        Status.INVALID_NIK,
        Status.INVALID_DATE,
        Status.INVALID_PHONE,
    } <= statuses
    events = Counter(e.get("jsonPayload", {}).get("event") for c in captures for e in c.entries)
    for event in (
        "row_outcome",
        "run_finished",
        "run_failed",
        "fhir_retry",
        "report_failed",
        "manifest_written",
        "run_unsettled",
        "officer_rows",
    ):
        assert events[event] >= 1, event
    # task 0 failed the run, and its retry failed it again: one run, one failure to count
    assert (events["run_failed"], events["run_failed_again"]) == (1, 1)
    drift = {r.drift for r in by_name["reconcile"].drift}
    assert drift == {DriftClass.MISSING, DriftClass.DIFFERENT, DriftClass.NOT_FOUND}, drift
    assert events["reconcile_drift"] == 10 and events["reconcile_finished"] == 1
    for capture in captures:  # the same fields wherever a row ended (common/recording.py)
        for line in (e["jsonPayload"] for e in capture.entries if _event(e) == "row_outcome"):
            assert set(line) >= {"run_date", "execution", "source", "row", "status", "nik"}
    replay = by_name["replay"]
    assert [e["jsonPayload"]["source"] for e in replay.entries if _event(e) == "row_outcome"] == [
        "replay"
    ]
    assert events["replay_malformed"] == 1 and events["config_invalid"] == 1
    assert all(
        e["severity"] in ("INFO", "WARNING", "ERROR") for c in captures for e in c.entries
    ), "every line the job writes is JSON with a severity"
    empty = _payload(by_name["empty-window"], "manifest_written")
    assert (empty["candidates"], empty["decided"], empty["rows_expected"]) == (0, 0, True)


def _payload(capture: Capture, event: str) -> dict[str, Any]:
    (line,) = (e["jsonPayload"] for e in capture.entries if _event(e) == event)
    return dict(line)


def _event(entry: dict[str, Any]) -> str | None:
    event = entry.get("jsonPayload", {}).get("event")
    return str(event) if event else None


def test_each_log_metric_counts_exactly_the_lines_it_is_meant_to(captures: list[Capture]) -> None:
    assert metric_problems(SHIPPED, captures) == []
    names = {body["name"] for body in SHIPPED.resources("google_logging_metric").values()}
    assert names == set(expected(captures[0]))


def test_the_alerts_select_label_values_the_lines_carry(captures: list[Capture]) -> None:
    """PromQL label matchers name values the extractors produce (a misspelt status would make
    an alert never fire) and every value the lines carry is one the code defines."""
    seen = {
        point["status"]
        for c in captures
        for points in evaluate(SHIPPED, c.entries).values()
        for point in points
        if "status" in point
    }
    defined = {s.value for s in Status} | {s.value for s in RunStatus}
    assert seen <= defined
    classes = {c.value for c in DriftClass}
    assert {
        p["class"]
        for c in captures
        for ps in evaluate(SHIPPED, c.entries).values()
        for p in ps
        if "class" in p
    } <= classes
    assert label_values(SHIPPED, {"status": defined, "class": classes}) == []


def test_an_empty_window_pages_only_when_rows_were_expected(captures: list[Capture]) -> None:
    """The night whose rows were all typed with the wrong year pages; the same line from a
    window of only QUIET_WEEKDAYS (rows_expected false: tests/test_oncall_signals.py) does
    not, nor does a night with rows in its window."""
    by_name = {c.name: c for c in captures}
    (line,) = (e for e in by_name["empty-window"].entries if _event(e) == "manifest_written")
    quiet = {**line, "jsonPayload": {**line["jsonPayload"], "rows_expected": False}}
    (synced,) = (e for e in by_name["succeeded"].entries if _event(e) == "manifest_written")
    counted = evaluate(SHIPPED, [line, quiet, synced])["phonesync_empty_windows"]
    assert counted == [{}]


def test_a_run_pages_for_its_duration_by_its_own_line(captures: list[Capture]) -> None:
    """The run-too-long alert counts run_finished lines whose duration_seconds is above
    max_run_minutes: a 22-minute run never pages for 25 (a percentile of the duration
    distribution read a bucket spanning 1297-1946 s), 25 minutes and a second does."""
    (line,) = (e for e in captures[0].entries if _event(e) == "run_finished")
    lengths = {1320.0: 0, 1500.0: 0, 1501.0: 1, 3000.0: 1}
    for seconds, pages in lengths.items():
        entry = {**line, "jsonPayload": {**line["jsonPayload"], "duration_seconds": seconds}}
        assert len(evaluate(SHIPPED, [entry])["phonesync_runs_too_long"]) == pages, seconds
    longer = Config.read(ROOT / "terraform", {"project_id": "p", "max_run_minutes": 20})
    entry = {**line, "jsonPayload": {**line["jsonPayload"], "duration_seconds": 1320.0}}
    assert len(evaluate(longer, [entry])["phonesync_runs_too_long"]) == 1


def test_the_regional_log_bucket_takes_every_line_of_the_job_and_the_function(
    captures: list[Capture],
) -> None:
    """The sink to the bucket in the region and the _Default sink's exclusion share one filter:
    it must select every line the job and the function write (else a line would be stored in
    the global _Default bucket), the Data Access audit logs of Firestore and Secret Manager, and
    nothing of the scheduler's (which stays in _Default)."""
    regional = parse(SHIPPED.resolve("${local.regional_logs}"))
    for capture in captures:
        for entry in capture.entries:
            assert regional(entry) is (capture.name != "scheduler"), (capture.name, entry)
    audit = {
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
        "resource": {"type": "audited_resource"},
        "protoPayload": {"serviceName": "firestore.googleapis.com"},
    }
    assert regional(audit)
    assert regional({**audit, "protoPayload": {"serviceName": "secretmanager.googleapis.com"}})
    assert not regional({**audit, "protoPayload": {"serviceName": "storage.googleapis.com"}})
    activity = "projects/p/logs/cloudaudit.googleapis.com%2Factivity"
    assert not regional({**audit, "logName": activity})


def test_a_metric_that_miscounts_fails_the_check(captures: list[Capture]) -> None:
    """The fixture's runs metric forgets run_failed (the bug [2.3] fixed): the run that could
    not start goes uncounted, so the 'run not finished' alert would page after it anyway."""
    planted = Config.read(FIXTURES / "metrics")
    assert metric_problems(planted, captures) == [
        "failed: phonesync_runs counts {}, not {(('status', 'failed'),): 1}"
    ]


@pytest.mark.parametrize(
    "query",
    [
        'jsonPayload.event=~"run_.*"',
        'jsonPayload.event="a" AND',
        "(jsonPayload.event=a",
        "jsonPayload.event:*",
        "severity>=LOUD",
        'SEARCH("x")',
        '"bare text"',
    ],
)
def test_a_filter_outside_the_evaluated_subset_fails_loudly(query: str) -> None:
    with pytest.raises(QuerySyntaxError):
        parse(query)


def test_the_query_language_reads_as_google_documents_it() -> None:
    entry = log_entry(
        '{"severity": "WARNING", "message": "m", "event": "x", "n": 5, "logging.googleapis.com/labels": {"a": "b"}}',
        JOB,
        {},
    )
    assert entry["severity"] == "WARNING" and entry["labels"] == {"a": "b"}
    assert entry["jsonPayload"] == {"message": "m", "event": "x", "n": 5}
    truths = {
        'jsonPayload.event="x"': True,
        'jsonPayload.event="X"': False,
        "jsonPayload.event:X": True,
        'jsonPayload.event!="x"': False,
        'jsonPayload.missing!="x"': True,
        "severity>=WARNING": True,
        "severity>ERROR": False,
        "jsonPayload.n>=5 AND jsonPayload.n<6": True,
        # OR binds tighter than AND
        'jsonPayload.event="y" OR jsonPayload.event="x" AND jsonPayload.n=5': True,
        'jsonPayload.event="y" OR jsonPayload.event="x" AND jsonPayload.n=4': False,
        'NOT jsonPayload.event="x"': False,
        '-jsonPayload.event="y"': True,
        'labels.a="b" resource.labels.job_name="phonesync"': True,
    }
    assert {q: parse(q)(entry) for q in truths} == truths
    assert extractor("EXTRACT(jsonPayload.n)")(entry) == "5"
    assert extractor('REGEXP_EXTRACT(jsonPayload.message, "(m)")')(entry) == "m"
    assert log_entry("plain text", JOB, {})["textPayload"] == "plain text"
