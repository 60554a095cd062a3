"""Which dates a night covers: its own, the lookback's, and the missed nights since the last
date a finished run covered (common/night_window.py)."""

from datetime import date

import pytest

from common.night_window import NightWindow, night_window
from common.store import RunState, RunStatus

D = date(2025, 9, 25)


def run(day: str, first: str = "", status: RunStatus = RunStatus.SUCCEEDED) -> RunState:
    return RunState(day, f"exec-{day}", status, 1, 0.0, 0.0, window_first=first)


def window(runs: list[RunState], catch_up: int = 7, lookback: int = 1) -> NightWindow:
    return night_window(D, runs, lookback_days=lookback, catch_up_days=catch_up, action_days=30)


def iso(w: NightWindow) -> tuple[str, list[str], list[str]]:
    return (
        w.first.isoformat(),
        [d.isoformat() for d in w.caught_up],
        [d.isoformat() for d in w.unsynced],
    )


def test_a_night_after_a_finished_night_is_its_lookback() -> None:
    assert iso(window([run("2025-09-24", "2025-09-23")])) == ("2025-09-24", [], [])
    assert iso(window([run("2025-09-24", "2025-09-24")], lookback=0)) == ("2025-09-25", [], [])


def test_two_missed_nights_are_caught_up() -> None:
    """The issue's case: the 22nd ran, the 23rd and 24th never did."""
    w = window([run("2025-09-22", "2025-09-21")])
    assert iso(w) == ("2025-09-23", ["2025-09-23", "2025-09-24"], [])
    assert w.dates() == [date(2025, 9, 23), date(2025, 9, 24), D]


@pytest.mark.parametrize(
    "status", [RunStatus.FAILED, RunStatus.RUNNING]
)  # a run that did not finish covered nothing
def test_a_night_whose_run_did_not_finish_is_caught_up(status: RunStatus) -> None:
    runs = [run("2025-09-22", "2025-09-21"), run("2025-09-23", "2025-09-22", status)]
    assert iso(window(runs)) == ("2025-09-23", ["2025-09-23", "2025-09-24"], [])
    runs.append(run("2025-09-24", "2025-09-22", RunStatus.PARTIAL))  # it caught up the 23rd
    assert iso(window(runs)) == ("2025-09-24", [], [])


def test_the_catch_up_is_capped_and_the_rest_reported_unsynced() -> None:
    w = window([run("2025-09-15", "2025-09-14")], catch_up=3)
    assert iso(w) == (
        "2025-09-22",
        ["2025-09-22", "2025-09-23", "2025-09-24"],
        [f"2025-09-{d}" for d in range(16, 22)],
    )


def test_unsynced_dates_stay_reported_until_a_backfill_covers_them() -> None:
    """The night after a capped catch-up still sees the dates no run covered; a backfill of
    the oldest covers them."""
    runs = [run("2025-09-20", "2025-09-19"), run("2025-09-24", "2025-09-23")]  # 21st, 22nd left
    assert iso(window(runs, catch_up=1)) == ("2025-09-24", [], ["2025-09-21", "2025-09-22"])
    runs.append(run("2025-09-22", "2025-09-21"))
    assert iso(window(runs, catch_up=1)) == ("2025-09-24", [], [])


def test_a_backfill_reports_the_missed_dates_after_it() -> None:
    """A rerun of an older date also sees what the runs after it left (so a backfill of one
    missed date does not make a second one look synced)."""
    runs = [run("2025-09-20", "2025-09-19"), run("2025-09-28", "2025-09-27")]
    w = night_window(date(2025, 9, 22), runs, lookback_days=1, catch_up_days=7, action_days=30)
    assert iso(w) == (
        "2025-09-21",
        ["2025-09-21"],
        ["2025-09-23", "2025-09-24", "2025-09-25", "2025-09-26"],
    )


def test_no_finished_run_within_action_days_means_nothing_known_to_catch_up() -> None:
    assert iso(window([])) == ("2025-09-24", [], [])
    assert iso(window([run("2025-09-20", "2025-09-19", RunStatus.FAILED)])) == (
        "2025-09-24",
        [],
        [],
    )
    # a rerun of the date itself is not an earlier run
    assert iso(window([run("2025-09-25", "2025-09-24")])) == ("2025-09-24", [], [])


def test_runs_recorded_before_windows_were_kept_cover_their_own_date() -> None:
    """At worst such a date is taken again: its applied rows cost no FHIR call (the ledger)."""
    assert iso(window([run("2025-09-23"), run("2025-09-24")])) == ("2025-09-24", [], [])
    assert iso(window([run("2025-09-22"), run("2025-09-24")])) == (
        "2025-09-23",
        ["2025-09-23"],
        [],
    )
