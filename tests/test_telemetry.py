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
