"""What the job tells on-call besides a run's own lines: whether a night expected rows
(QUIET_WEEKDAYS, on ``manifest_written``) and which earlier runs were left ``partial``
(``run_unsettled``). The alerts that read them are checked on real lines in
tests/test_log_metrics.py."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from common import telemetry
from common.config import ConfigError, load_settings
from common.outcomes import RowOutcome, Status
from common.quiet_days import rows_expected
from common.store import RunStatus, SqliteStore, StateStore
from common.unsettled import LEFT_AFTER_SECONDS, LOOKBACK_DAYS, log_unsettled_runs
from tests.store_contract import LEASE, finish, item, write_manifest

NOW = 2_000_000_000.0
DAY = 86_400.0


@pytest.mark.parametrize(
    "first,last,quiet,expected",
    [
        ("2025-09-27", "2025-09-28", {"sat", "sun"}, False),  # Saturday and Sunday
        ("2025-09-28", "2025-09-29", {"sat", "sun"}, True),  # Sunday and Monday
        ("2025-09-28", "2025-09-28", {"sun"}, False),
        ("2025-09-23", "2025-09-24", set(), True),
        ("2025-09-20", "2025-09-28", {"sat", "sun"}, True),  # a caught-up week
    ],
)
def test_a_window_expects_rows_unless_every_date_is_a_quiet_day(
    first: str, last: str, quiet: set[str], expected: bool
) -> None:
    days = date.fromisoformat(first), date.fromisoformat(last)
    assert rows_expected(*days, quiet) is expected  # type: ignore[arg-type]


def test_quiet_weekdays_are_read_as_the_environment_writes_them() -> None:
    base = {"SHEET_CSV": "s.csv", "FHIR_BASE_URL": "http://fhir.test"}
    settings = load_settings({**base, "QUIET_WEEKDAYS": " Sun, sat "})
    assert settings.quiet_weekdays == {"sat", "sun"}
    assert settings.to_env()["QUIET_WEEKDAYS"] == "sat,sun"
    assert load_settings(settings.to_env()).quiet_weekdays == settings.quiet_weekdays
    assert settings.for_log()["quiet_weekdays"] == "sat,sun"
    assert load_settings(base).quiet_weekdays == frozenset()
    with pytest.raises(ConfigError) as refused:
        load_settings({**base, "QUIET_WEEKDAYS": "sat,funday"})
    assert refused.value.problems == [
        "QUIET_WEEKDAYS: expected one of 'mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun',"
        " got 'funday'"
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    backend = SqliteStore(tmp_path / "state.sqlite3")
    yield backend
    backend.close()


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    telemetry.configure_logging(stream=stream)
    try:
        yield stream
    finally:
        telemetry.configure_logging()
        telemetry.reset_context()


def finished_run(store: StateStore, run_date: str, ended: float, *statuses: Status) -> None:
    execution = f"exec-{run_date}"
    store.acquire_run(run_date, execution, 1, LEASE, ended - 60)
    items = [item(n) for n in range(2, 2 + len(statuses))]
    write_manifest(store, run_date, execution, {0: items}, [])
    store.record_outcomes(
        run_date, [RowOutcome.of(i.row, s) for i, s in zip(items, statuses, strict=True)]
    )
    assert finish(store, 0, ended, execution, run_date) is not None


def events(stream: io.StringIO) -> list[dict[str, object]]:
    """The phonesync lines (the handler's diagnostic line left out)."""
    parsed = (json.loads(line) for line in stream.getvalue().splitlines())
    return [line for line in parsed if "event" in line]


def test_runs_left_partial_for_a_day_are_logged_until_they_settle(
    store: SqliteStore, lines: io.StringIO
) -> None:
    finished_run(store, "2025-09-21", NOW - 2 * DAY, Status.ERROR, Status.DEFERRED, Status.UPDATED)
    finished_run(store, "2025-09-22", NOW - LEFT_AFTER_SECONDS + 60, Status.DEFERRED)  # too soon
    finished_run(store, "2025-09-20", NOW - 3 * DAY, Status.UPDATED)  # succeeded
    finished_run(store, "2025-09-08", NOW - 15 * DAY, Status.DEFERRED)  # beyond the lookback
    log_unsettled_runs(store, "2025-09-23", NOW)
    assert [(e["event"], e["unsettled_date"], e["waiting"]) for e in events(lines)] == [
        ("run_unsettled", "2025-09-21", {"deferred": 1, "error": 1})
    ]
    (line,) = events(lines)
    assert line["severity"] == "WARNING" and line["hours_since_end"] == 48
    assert (date(2025, 9, 23) - date(2025, 9, 8)).days > LOOKBACK_DAYS

    # the error row sent again and the deferred one replayed: the run settles, nothing more
    for row, status in ((2, Status.UPDATED), (3, Status.UNCHANGED)):
        store.record_replay("2025-09-21", "exec-2025-09-21", [RowOutcome.of(row, status)], NOW)
    run = store.get_run("2025-09-21")
    assert run is not None and run.status is RunStatus.SUCCEEDED
    lines.truncate(0)
    lines.seek(0)
    log_unsettled_runs(store, "2025-09-24", NOW + DAY)
    assert [e["unsettled_date"] for e in events(lines)] == ["2025-09-22"]


def test_a_check_that_cannot_read_says_so_and_does_not_fail_the_run(
    tmp_path: Path, lines: io.StringIO
) -> None:
    closed = SqliteStore(tmp_path / "state.sqlite3")
    closed.close()
    log_unsettled_runs(closed, "2025-09-23", NOW)
    ((event, severity),) = [(e["event"], e["severity"]) for e in events(lines)]
    assert (event, severity) == ("unsettled_unchecked", "WARNING")
