"""No date is skipped silently ([3.6].1): a night covers every date since the last date a
finished run covered, at most CATCH_UP_DAYS back; what it cannot reach stays reported (status,
run_finished) until a run covers it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from common.config import load_settings
from common.store import SqliteStore
from jobs.cli import main
from jobs.task import run_task
from tests.simulator import API_KEY, RunningSim, simulator

# Rows dated 22-, 23-, 24- and 25-09, a patient each.
SHEET = """last_updated_date,nik_identifier,name,phone_number
22-09-2025,3171044203920001,DEWI,081200000022
23-09-2025,3578106207900002,MAYA,081200000023
24-09-2025,3273044812940003,RINA,081200000024
25-09-2025,1275095011890004,LINDA,081200000025
"""
NUMBERS = {
    "patient-001": "081200000022",
    "patient-002": "081200000023",
    "patient-003": "081200000024",
    "patient-004": "081200000025",
}


def night(sim: RunningSim, tmp_path: Path, run_date: str, **env: str) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(SHEET)
    settings = load_settings(
        {
            "RUN_DATE": run_date,
            "SHEET_CSV": str(sheet),
            "FHIR_BASE_URL": sim.fhir,
            "FHIR_API_KEY": API_KEY,
            "STATE_PATH": str(tmp_path / "state.sqlite3"),
            "CLOUD_RUN_EXECUTION": f"exec-{run_date}",
            **env,
        }
    )
    assert run_task(settings) == 0


def mobiles(sim: RunningSim) -> dict[str, str]:
    out = {}
    for patient in sim.bundle():
        for telecom in patient.get("telecom", []):
            if telecom.get("use") == "mobile":
                out[patient["id"]] = telecom["value"]
    return out


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [
        r.json_fields  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "json_fields", {}).get("event") == event
    ]


def test_two_missed_nights_are_caught_up_and_status_names_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: the night of 22-09 runs, 23-09 and 24-09 never run (scheduler or
    registry down), the night of 25-09 runs: every row ends applied."""
    caplog.set_level(logging.INFO, logger="phonesync")
    with simulator() as sim:
        night(sim, tmp_path, "2025-09-22")
        night(sim, tmp_path, "2025-09-25")
        assert {k: v for k, v in mobiles(sim).items() if k in NUMBERS} == NUMBERS
    store = SqliteStore(tmp_path / "state.sqlite3")
    try:
        run = store.get_run("2025-09-25")
        applied = {o.row: o.status.value for o in store.outcomes("2025-09-25")}
    finally:
        store.close()
    assert run is not None and run.status.value == "succeeded"
    assert (run.window_first, run.caught_up, run.unsynced) == (
        "2025-09-23",
        ["2025-09-23", "2025-09-24"],
        [],
    )
    assert applied == {3: "updated", 4: "updated", 5: "updated"}
    manifest, finished = logged(caplog, "manifest_written")[-1], logged(caplog, "run_finished")[-1]
    assert manifest["window"] == ["2025-09-23", "2025-09-25"]
    assert manifest["caught_up"] == ["2025-09-23", "2025-09-24"]
    assert (manifest["candidates"], manifest["decided"], manifest["outside_window"]) == (3, 0, 1)
    assert finished["caught_up"] == ["2025-09-23", "2025-09-24"]
    assert (finished["unsynced"], finished["unsynced_count"]) == ([], 0)
    capsys.readouterr()
    assert main(["status", "--date", "2025-09-25", "--state", str(tmp_path / "state.sqlite3")]) == 0
    shown = capsys.readouterr().out
    assert "window     2025-09-23 to 2025-09-25" in shown
    assert "caught up  2025-09-23, 2025-09-24 (no finished run had covered them)" in shown


@pytest.mark.slow  # five whole runs: ~6 s, not in scripts/test-fast
def test_dates_past_the_catch_up_stay_reported_until_a_backfill_covers_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="phonesync")
    state = str(tmp_path / "state.sqlite3")
    with simulator() as sim:
        night(sim, tmp_path, "2025-09-22", CATCH_UP_DAYS="1")
        night(sim, tmp_path, "2025-09-25", CATCH_UP_DAYS="1")
        assert "patient-002" not in mobiles(sim)  # the 23rd: past the catch-up
        capsys.readouterr()
        assert main(["status", "--date", "2025-09-25", "--state", state]) == 0
        assert (
            "not synced 2025-09-23 (no finished run covers it: rerun with RUN_DATE, see the"
            " runbook)" in capsys.readouterr().out
        )
        assert logged(caplog, "run_finished")[-1]["unsynced_count"] == 1
        # the next night still says so, and so does its run_finished line
        night(sim, tmp_path, "2025-09-26", CATCH_UP_DAYS="1")
        assert logged(caplog, "run_finished")[-1]["unsynced"] == ["2025-09-23"]
        night(sim, tmp_path, "2025-09-23", CATCH_UP_DAYS="1")  # the backfill
        assert mobiles(sim)["patient-002"] == NUMBERS["patient-002"]
        assert logged(caplog, "run_finished")[-1]["unsynced_count"] == 0
        night(sim, tmp_path, "2025-09-27", CATCH_UP_DAYS="1")
    finished = logged(caplog, "run_finished")[-1]
    assert (finished["window"], finished["unsynced"]) == (["2025-09-26", "2025-09-27"], [])
