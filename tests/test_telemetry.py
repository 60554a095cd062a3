"""Log lines: JSON with severity and event on Cloud Run (and with LOG_FORMAT=json), short text
for a person elsewhere; the bound context in every line, never PII, whatever the format."""

import io
import json
import logging
import os
import re
from pathlib import Path

import pytest

from common import telemetry
from common.config import ENV_VARS
from tests.simulator import API_KEY, SAMPLE_SHEET, run_cli, run_on_terminal, simulator


def capture() -> io.StringIO:
    telemetry.reset_context()
    stream = io.StringIO()
    telemetry.configure_logging(stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_event_lines_are_structured_json_with_context() -> None:
    stream = capture()
    telemetry.bind(run_date="2025-09-23", execution="phonesync-abc", task_index=2)
    telemetry.log_event("row_outcome", status="deferred", row=7, severity=logging.WARNING)
    (line,) = [entry for entry in lines(stream) if entry.get("event") == "row_outcome"]
    assert line["severity"] == "WARNING"
    assert (line["run_date"], line["execution"], line["task_index"]) == (
        "2025-09-23",
        "phonesync-abc",
        2,
    )
    assert (line["status"], line["row"]) == ("deferred", 7)


def test_a_nik_or_phone_that_slips_through_is_redacted() -> None:
    stream = capture()
    telemetry.log_event(
        "oops",
        "patient 3171044203920001 phone +6281234567890",
        detail={"numbers": ["081234567890", "6285678901234"]},
        masked="3171********0001",
    )
    raw = stream.getvalue()
    for pii in ("3171044203920001", "6281234567890", "081234567890", "6285678901234"):
        assert pii not in raw
    (line,) = [entry for entry in lines(stream) if entry.get("event") == "oops"]
    assert line["masked"] == "3171********0001"  # masked values pass untouched
    assert line["message"] == "patient [redacted] phone [redacted]"


def test_source_location_is_the_callers_line() -> None:
    stream = capture()
    telemetry.log_event("here")
    (line,) = [entry for entry in lines(stream) if entry.get("event") == "here"]
    location = line["logging.googleapis.com/sourceLocation"]
    assert location["file"].endswith("test_telemetry.py")
    assert location["function"] == "test_source_location_is_the_callers_line"


def test_a_fhir_retry_keeps_the_tasks_attempt() -> None:
    from common.registry import log_retry

    stream = capture()
    telemetry.bind(attempt=2)
    log_retry("GET", 503, 4)
    (line,) = [entry for entry in lines(stream) if entry.get("event") == "fhir_retry"]
    assert (line["attempt"], line["request_attempt"], line["http_status"]) == (2, 4, 503)
    assert line["logging.googleapis.com/sourceLocation"]["function"] == "log_retry"


def test_a_cloud_run_task_with_a_bad_configuration_logs_it_as_json_with_severity() -> None:
    env = {"FHIR_BASE_URL": "", "SHEET_ID": "", "SHEET_CSV": "", "CLOUD_RUN_JOB": "phonesync"}
    done = run_cli("run", env=env)
    assert done.returncode == 2
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]  # no diagnostic line
    assert line["event"] == "config_invalid" and line["severity"] == "ERROR"
    assert "FHIR_BASE_URL: required" in line["message"]


# -- a person at a terminal reads text; Cloud Run gets JSON -----------------------------------

DATE = "2025-09-23"
#: A line for a person: the time, the severity unless INFO, the message.
HUMAN_LINE = re.compile(r"\d\d:\d\d:\d\d ((warning|error): )?[^{\s]")
#: Set by Cloud Run: a job's tasks have CLOUD_RUN_JOB and CLOUD_RUN_EXECUTION, a service's
#: instances (the gen2 replay function) K_SERVICE.
ON_CLOUD_RUN = [
    {"CLOUD_RUN_JOB": "phonesync", "CLOUD_RUN_EXECUTION": "phonesync-x7k2p"},
    {"K_SERVICE": "replay"},
]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without phonesync's settings or Cloud Run's variables."""
    gone = {*ENV_VARS, *telemetry.CLOUD_RUN_VARIABLES}
    return {**{k: v for k, v in os.environ.items() if k not in gone}, **extra}


def sample_run(fhir: str, state: Path, *more: str) -> list[str]:
    return [
        "run",
        *("--date", DATE, "--sheet", str(SAMPLE_SHEET), "--fhir-url", fhir),
        *("--state", str(state), *more),
    ]


def test_a_local_run_on_a_terminal_shows_short_text(tmp_path: Path) -> None:
    with simulator() as sim:
        code, shown = run_on_terminal(
            *sample_run(sim.fhir, tmp_path / "s.db"),
            env=clean_env(FHIR_API_KEY=API_KEY),
            cwd=tmp_path,
        )
    assert code == 0, shown
    lines = shown.splitlines()
    assert all(HUMAN_LINE.match(line) for line in lines), shown
    messages = [line.split(" ", 1)[1] for line in lines]
    assert "task 0/1 for 2025-09-23" in messages and "row 2: updated" in messages
    assert messages[-1].startswith("run 2025-09-23 succeeded in ")
    assert "logging.googleapis.com" not in shown and '"severity"' not in shown


def test_a_configuration_error_on_a_terminal_is_one_line_per_problem(tmp_path: Path) -> None:
    code, shown = run_on_terminal("run", env=clean_env(), cwd=tmp_path)
    assert code == 2
    assert shown.splitlines() == [
        "phonesync: error: FHIR_BASE_URL: required (the FHIR R4 base, e.g. https://…/fhir)",
        "phonesync: error: SHEET_ID or SHEET_CSV: exactly one is required"
        " (the Sheet, or a CSV export)",
    ]


@pytest.mark.slow
def test_local_tasks_on_a_terminal_still_write_json_task_logs(tmp_path: Path) -> None:
    """The task processes' logs are read as Cloud Run's (tests/test_log_metrics.py)."""
    state = tmp_path / "state" / "s.db"
    with simulator() as sim:
        code, shown = run_on_terminal(
            *sample_run(sim.fhir, state, "--tasks", "2"),
            env=clean_env(FHIR_API_KEY=API_KEY, LOG_FORMAT="text"),
            cwd=tmp_path,
        )
    assert code == 0, shown
    assert "run 2025-09-23: succeeded" in shown and "{" not in shown
    logs = sorted((state.parent / "logs").glob("*-task-*.jsonl"))
    assert len(logs) == 2
    for log in logs:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert lines and all(line["severity"] and line["event"] for line in lines), log


@pytest.mark.parametrize("cloud_run", ON_CLOUD_RUN, ids=["job", "service"])
def test_cloud_run_gets_json_even_on_a_terminal(cloud_run: dict[str, str], tmp_path: Path) -> None:
    with simulator() as sim:
        code, shown = run_on_terminal(
            *sample_run(sim.fhir, tmp_path / "s.db"),
            env=clean_env(FHIR_API_KEY=API_KEY, **cloud_run),
            cwd=tmp_path,
        )
    assert code == 0, shown
    lines = [json.loads(line) for line in shown.splitlines()]
    assert all(line["severity"] in ("INFO", "WARNING") and line["event"] for line in lines)
    assert lines[0]["event"] == "task_started" and lines[-1]["event"] == "run_finished"
    assert "logging.googleapis.com/diagnostic" not in shown


@pytest.mark.parametrize(
    ("setting", "where", "json_lines"),
    [
        ("json", {}, True),  # e.g. a log collector off Cloud Run
        ("text", ON_CLOUD_RUN[0], False),  # reading a Cloud Run job's run by hand
    ],
    ids=["json-off-cloud-run", "text-on-cloud-run"],
)
def test_log_format_is_explicit_when_set(
    setting: str, where: dict[str, str], json_lines: bool, tmp_path: Path
) -> None:
    with simulator() as sim:
        code, shown = run_on_terminal(
            *sample_run(sim.fhir, tmp_path / "s.db"),
            env=clean_env(FHIR_API_KEY=API_KEY, LOG_FORMAT=setting, **where),
            cwd=tmp_path,
        )
    assert code == 0, shown
    lines = shown.splitlines()
    if json_lines:
        assert all(json.loads(line)["event"] for line in lines), shown
    else:
        assert all(HUMAN_LINE.match(line) for line in lines), shown


def test_the_text_lines_are_redacted_too() -> None:
    telemetry.reset_context()
    stream = io.StringIO()
    telemetry.configure_logging(stream=stream, log_format="text")
    telemetry.log_event("oops", "patient 3171044203920001 phone +6281234567890")
    telemetry.log_event("late", "row 7: deferred", severity=logging.WARNING)
    (first, second) = stream.getvalue().splitlines()
    assert first.endswith(" patient [redacted] phone [redacted]") and HUMAN_LINE.match(first)
    assert second.endswith(" warning: row 7: deferred") and HUMAN_LINE.match(second)
