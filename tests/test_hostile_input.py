"""Hostile sheets: oversized cells are row-level rejections in every mode, and nothing task 0
meets ends the run silently (a ``run_failed`` event names the cause, the run is ``failed``)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

import common.sheet
from common import telemetry
from common.config import load_settings
from common.errors import InputError
from common.outcomes import Status
from common.planning import plan_rows
from common.sheet import parse_csv
from common.store import RunStatus, SqliteStore
from jobs.cli import main
from jobs.task import run_task
from tests.simulator import API_KEY, SAMPLE_BUNDLE, simulator

DATE = "2025-09-23"
HUGE = 200 * 1024  # over the csv module's default field limit of 128 KiB
HEADER = "last_updated_date,nik_identifier,name,phone_number\n"
GOOD = "23-09-2025,3171044203920001,DEWI,081234567890\n"


def hostile_sheet() -> str:
    return (
        HEADER
        + GOOD  # row 2
        + f"23-09-2025,{'3' * HUGE},MAYA,085678901234\n"  # row 3: NIK
        + f"23-09-2025,3273044812940003,RINA,{'8' * HUGE}\n"  # row 4: phone
        + f'"{"2" * HUGE}",1275095011890004,LINDA,083456789012\n'  # row 5: date, quoted
        + f"23-09-2025,7371094806930005,{'S' * HUGE},084567890123\n"  # row 6: name (ignored)
    )


EXPECTED = {
    2: Status.UPDATED,
    3: Status.INVALID_NIK,
    4: Status.INVALID_PHONE,
    5: Status.INVALID_DATE,
    6: Status.UPDATED,
}


def test_oversized_cells_are_rejected_row_by_row() -> None:
    plan = plan_rows(parse_csv(hostile_sheet()))
    got = {o.row: o for o in plan.decided}
    assert {c.row for c in plan.candidates} == {2, 6}
    for row in (3, 4, 5):
        assert got[row].status is EXPECTED[row]
        assert f"is {HUGE:,} characters long" in got[row].reason
        assert len(got[row].nik_masked) < 60  # the mask does not carry the cell into reports
    assert got[3].reason.startswith("nik_identifier:") and got[4].reason.startswith("phone_number:")


def test_a_cell_past_the_csv_limit_stops_the_sheet_naming_its_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(common.sheet, "CSV_FIELD_LIMIT", 1000)
    with pytest.raises(InputError, match=r"row 3: field larger than field limit \(1000\)"):
        parse_csv(HEADER + GOOD + f"23-09-2025,{'3' * 2000},MAYA,085678901234\n")


def test_transform_reports_oversized_cells_and_exits_0(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(hostile_sheet())
    report = tmp_path / "report.json"
    code = main(
        [
            "transform",
            *("--sheet", str(sheet), "--bundle", str(SAMPLE_BUNDLE)),
            *("--out", str(tmp_path / "out.json"), "--report", str(report)),
        ]
    )
    assert code == 0
    rows = {r["row"]: r for r in json.loads(report.read_text())["rows"]}
    assert {row: rows[row]["status"] for row in EXPECTED} == {
        row: status.value for row, status in EXPECTED.items()
    }
    assert "characters long" in rows[3]["reason"]


def run_env(tmp_path: Path, sim_fhir: str, **extra: str) -> dict[str, str]:
    return {
        "FHIR_BASE_URL": sim_fhir,
        "FHIR_API_KEY": API_KEY,
        "RUN_DATE": DATE,
        "STATE_PATH": str(tmp_path / "state.db"),
        "CLOUD_RUN_EXECUTION": "exec-1",
        **extra,
    }


def outcomes(tmp_path: Path) -> dict[int, Status]:
    store = SqliteStore(tmp_path / "state.db")
    try:
        return {o.row: o.status for o in store.outcomes(DATE)}
    finally:
        store.close()


@pytest.mark.parametrize("source", ["csv", "sheets_api"])
def test_the_job_rejects_oversized_cells_and_syncs_the_rest(
    tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = hostile_sheet()
    with simulator(sheet_csv=text) as sim:
        if source == "csv":
            (tmp_path / "sheet.csv").write_text(text)
            extra = {"SHEET_CSV": str(tmp_path / "sheet.csv")}
        else:
            extra = {
                "SHEET_ID": "sheet-1",
                "SHEETS_API_URL": sim.url,
                "SHEETS_ACCESS_TOKEN": "test-token",
            }
        assert run_task(load_settings(run_env(tmp_path, sim.fhir, **extra))) == 0
        assert outcomes(tmp_path) == EXPECTED
        assert set(sim.state.puts_by_patient) == {"patient-001", "patient-005"}


def test_an_unexpected_error_in_task_0_fails_the_run_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever task 0 meets before the manifest exists ends in run_failed naming the cause,
    never a crash that leaves the run 'running' until its lease expires."""

    def broken(config: object) -> list[object]:
        raise RuntimeError("sheet parser fell over at NIK 3171044203920001")

    monkeypatch.setattr("jobs.night_plan.read_rows", broken)
    (tmp_path / "sheet.csv").write_text(HEADER + GOOD)
    logs = io.StringIO()
    telemetry.configure_logging(stream=logs)
    try:
        with simulator() as sim:
            env = run_env(tmp_path, sim.fhir, SHEET_CSV=str(tmp_path / "sheet.csv"))
            assert run_task(load_settings(env)) == 1  # Cloud Run retries the task
    finally:
        telemetry.configure_logging(stream=sys.stderr)
    store = SqliteStore(tmp_path / "state.db")
    run = store.get_run(DATE)
    store.close()
    assert run.status is RunStatus.FAILED
    assert run.reason.startswith("RuntimeError: sheet parser fell over at NIK [redacted]")
    assert "in broken)" in run.reason  # where it happened
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    (failed,) = [e for e in events if e.get("event") == "run_failed"]
    assert failed["severity"] == "ERROR" and failed["unexpected"] is True
    assert failed["reason"] == run.reason
    assert "3171044203920001" not in logs.getvalue()
