"""A sheet that grew over many nights: the job reads it through the Sheets API in chunks of
rows, and records outcomes and ledger entries for its window's rows only."""

import sqlite3
from pathlib import Path

import pytest

from common import sheets_api
from common.config import load_settings
from common.store import SqliteStore
from jobs.task import run_task
from tests.simulator import API_KEY, simulator

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
NIGHTS = ("21-09-2025", "22-09-2025", "23-09-2025")  # the run is the 23rd's, without lookback
PATIENTS = 400


def nik(i: int) -> str:
    return f"3171{i:012d}"


def accumulated_sheet() -> str:
    """Each night the officers re-send every patient's number; one row has a typo'd date and
    one, dated the 24th, already replaces a number of the 23rd."""
    lines = ["last_updated_date,nik_identifier,name,phone_number"]
    for n, night in enumerate(NIGHTS):
        lines += [f"{night},{nik(i)},P{i},0812{n}{i:07d}" for i in range(PATIENTS)]
    lines.insert(7, f"31-02-2025,{nik(1)},P1,081299999999")  # row 8
    lines.append(f"24-09-2025,{nik(5)},P5,081288888888")
    return "\n".join(lines) + "\n"


def test_only_the_windows_rows_leave_records_and_the_rest_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sheets_api, "CHUNK_ROWS", 250)
    patients = [
        {
            "resourceType": "Patient",
            "id": f"p{i}",
            "identifier": [{"system": NIK_SYSTEM, "value": nik(i)}],
        }
        for i in range(PATIENTS)
    ]
    state = tmp_path / "state.sqlite3"
    with simulator(patients, sheet_csv=accumulated_sheet()) as sim:
        env = {
            "SHEET_ID": "sheet-1",
            "SHEET_RANGE": "Sheet1!A:D",
            "SHEETS_API_URL": sim.url,
            "SHEETS_ACCESS_TOKEN": "test-token",
            "FHIR_BASE_URL": sim.fhir,
            "FHIR_API_KEY": API_KEY,
            "RUN_DATE": "2025-09-23",
            "LOOKBACK_DAYS": "0",
            "STATE_PATH": str(state),
            "CLOUD_RUN_TASK_COUNT": "2",
            "CLOUD_RUN_EXECUTION": "exec-1",
        }
        codes = [run_task(load_settings({**env, "CLOUD_RUN_TASK_INDEX": str(i)})) for i in (0, 1)]
        assert codes == [0, 0]
        # 1,203 rows in the grid, read 250 at a time.
        assert sim.state.sheet_reads == [
            f"'Sheet1'!A{first}:D{min(first + 249, 1203)}" for first in range(1, 1204, 250)
        ]
        assert sum(sim.state.puts_by_patient.values()) == PATIENTS - 1
    window = range(2 + 1 + 2 * PATIENTS, 2 + 1 + 3 * PATIENTS)  # the 23rd's rows
    store = SqliteStore(state)
    try:
        run = store.get_run("2025-09-23")
        recorded = {o.row: o.status.value for o in store.outcomes("2025-09-23")}
    finally:
        store.close()
    assert set(recorded) == {8, *window}  # and none of the other 801 rows
    assert recorded[8] == "invalid_date"  # a date that is no date is in no window: reported
    assert recorded[window[5]] == "superseded"  # by the 24th's row, which has no record itself
    assert run is not None and run.total_rows == 1_202
    assert run.counts == {
        "updated": PATIENTS - 1,
        "superseded": 1,
        "other_date": 2 * PATIENTS + 1,
        "invalid_date": 1,
    }
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT COUNT(*) FROM ledger").fetchone() == (PATIENTS - 1,)
