"""Log lines are JSON with severity and event, carry the bound context, and never PII."""

import io
import json
import logging

from common import telemetry


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
    from tests.simulator import run_cli

    done = run_cli("run", env={"FHIR_BASE_URL": "", "SHEET_ID": "", "SHEET_CSV": ""})
    assert done.returncode == 2
    (line,) = [json.loads(text) for text in done.stdout.splitlines() if '"config_invalid"' in text]
    assert line["severity"] == "ERROR" and "FHIR_BASE_URL: required" in line["message"]
