"""The officers' loop closes ([3.5]): a row waiting on a field officer stays on their tab night
after night until it is fixed or its date is ACTION_DAYS old, and a fix keeping the old date is
synced the next night. Ten nights with the Sheets simulator: the sheet read through the
Sheets API, the tab read back as the officers see it."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from common.config import load_settings
from common.officer_report import HEADER
from common.outcomes import NEEDS_OFFICER, Status
from common.store import RunStatus, SqliteStore
from jobs.cli import main
from jobs.task import run_task
from sim.app import sheet_values_from_csv
from tests.simulator import API_KEY, RunningSim, simulator
from tests.test_officer_report import tab_values

FIRST_NIGHT = date(2025, 9, 21)
NIGHTS = [FIRST_NIGHT + timedelta(days=n) for n in range(10)]  # 21-09 … 30-09
HEADER_ROW = "last_updated_date,nik_identifier,name,phone_number"
# Dated the first night: its phone is wrong until the officer fixes it on night 10.
WRONG = "21-09-2025,3171044203920001,DEWI LESTARI SARI,0812-34x5-6789"
FIXED = "21-09-2025,3171044203920001,DEWI LESTARI SARI,081299990001"
# Dated the day before the first night (the lookback brings it in): never fixed.
NEVER = "20-09-2025,3578106207900002,MAYA SARI PUTRI,62 856 7890"
# The other patients' rows: one valid new number a night.
PATIENTS = [
    "3273044812940003",
    "1275095011890004",
    "7371094806930005",
    "5171036509910006",
    "3471031204950007",
    "3374164401880008",
    "1671034310900009",
    "6472044008870011",
]


def sheet(night: int) -> str:
    """The sheet as it stands on the evening of ``night`` (0-based): rows only grow; the
    officer fixes WRONG in place on the tenth."""
    rows = [NEVER, FIXED if night == 9 else WRONG]
    for n in range(night + 1):
        day = NIGHTS[n].strftime("%d-%m-%Y")
        rows.append(f"{day},{PATIENTS[n % len(PATIENTS)]},P{n},08129999{n:04d}")
    return "\n".join([HEADER_ROW, *rows]) + "\n"


def night_run(sim: RunningSim, state: Path, night: int) -> None:
    sim.state.sheet_values = sheet_values_from_csv(sheet(night))
    env = {
        "RUN_DATE": NIGHTS[night].isoformat(),
        "SHEET_ID": "officers",
        "SHEETS_API_URL": sim.url,
        "SHEETS_ACCESS_TOKEN": "local",
        "REPORT_SHEET_ID": "officers",
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "FHIR_BATCH_SIZE": "0",  # one request per search or update: counted below
        "STATE_PATH": str(state),
        "CLOUD_RUN_EXECUTION": f"exec-{night + 1}",
        "ACTION_DAYS": "9",  # NEVER (20-09) is checked up to 29-09, WRONG up to 30-09
    }
    assert run_task(load_settings(env)) == 0


@pytest.mark.slow  # ten whole runs: ~10 s, not in scripts/test-fast
def test_ten_nights_a_wrong_row_waits_on_the_tab_until_fixed_or_too_old(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    tabs: list[list[list[str]]] = []
    requests: list[int] = []
    at_finish: list[RunStatus] = []
    waiting_outcomes: list[int] = []  # rows waiting on an officer, over every run so far
    with simulator() as sim:
        for night in range(10):
            sim.state.reset_stats()
            night_run(sim, state, night)
            answered = sim.state.stats()["requests"]
            requests.append(
                sum(
                    n
                    for k, n in answered.items()
                    if k.split()[0] in ("GET", "PUT") and "metadata" not in k
                )
            )
            tabs.append(tab_values(sim.url, "officers", "phonesync"))
            store = SqliteStore(state)
            try:
                run = store.get_run(NIGHTS[night].isoformat())
                assert run is not None
                at_finish.append(run.status)
                waiting_outcomes.append(
                    sum(
                        len(store.outcomes(d.isoformat(), NEEDS_OFFICER))
                        for d in NIGHTS[: night + 1]
                    )
                )
            finally:
                store.close()
        patient = sim.state.patient("patient-001")
        assert patient is not None
    store = SqliteStore(state)
    try:
        runs = [store.get_run(day.isoformat()) for day in NIGHTS]
        outcomes = {day: store.outcomes(day.isoformat()) for day in NIGHTS}
        waiting_left = store.waiting_rows()
    finally:
        store.close()
    assert all(r is not None for r in runs)
    statuses = [r.status for r in runs if r is not None]

    # Nights 1-9: both rows on the tab, the run needs an officer; the never-fixed row's last
    # notice on night 9 (29-09, nine days after its date).
    for night in range(9):
        rows = {v[0]: v for v in tabs[night][2:]}
        assert tabs[night][1] == HEADER
        assert tabs[night][0][0].startswith(f"phonesync {NIGHTS[night]}: 2 baris perlu tindakan")
        assert set(rows) == {"2", "3"}, night
        assert rows["3"][4] == "Nomor HP tidak valid"
        assert rows["3"][6:8] == ["21-09-2025", "30-09-2025"]  # waiting since, checked until
        assert rows["2"][6:8] == ["21-09-2025", "29-09-2025"]
        last = rows["2"][5].startswith("PEMBERITAHUAN TERAKHIR")
        assert last == (night == 8), night
        assert not rows["3"][5].startswith("PEMBERITAHUAN TERAKHIR")
    # Night 10: the fix keeping the old date is synced; the other row has left the tab.
    assert tabs[9] == [
        [tabs[9][0][0]],
        HEADER,
    ]
    assert tabs[9][0][0].startswith("phonesync 2025-09-30: tidak ada baris yang perlu tindakan")
    assert statuses == [RunStatus.SUCCEEDED] * 8 + [RunStatus.NEEDS_ACTION, RunStatus.SUCCEEDED]
    telecom = [t["value"] for t in patient.get("telecom", []) if t.get("use") == "mobile"]
    assert telecom == ["081299990001"]

    # Each night took the rows up again: their outcome moved on, never duplicated; the runs
    # they left say so, and those ended succeeded (their other row applied).
    assert at_finish == [RunStatus.NEEDS_ACTION] * 9 + [RunStatus.SUCCEEDED]
    assert waiting_outcomes == [2] * 9 + [1]  # night 10: the last notice of night 9 stays
    for night in range(8):
        moved = {o.row: o for o in outcomes[NIGHTS[night]] if o.row in (2, 3)}
        assert {o.status for o in moved.values()} == {Status.SUPERSEDED}, night
        assert f"taken up again by the run of {NIGHTS[night + 1]} (row 3)" in moved[3].reason
    ninth = {o.row: o for o in outcomes[NIGHTS[8]]}
    assert (ninth[2].status, ninth[2].since) == (Status.INVALID_PHONE, "2025-09-21")  # in report
    tenth = {o.row: o for o in outcomes[NIGHTS[9]]}
    assert (tenth[3].status, tenth[3].since) == (Status.UPDATED, "2025-09-21")
    assert 2 not in tenth  # out of reach: counted with the other dates
    assert waiting_left == []

    # Cost follows the work: the night's new row is searched and written (2 requests); the
    # lookback's row already applied, the waiting rows still wrong, cost none; night 10 adds
    # the fix (search + PUT).
    assert requests == [2, 2, 2, 2, 2, 2, 2, 2, 2, 4]

    # status names the rows by since when they wait, and exits 3 while they do
    assert main(["status", "--date", "2025-09-29", "--state", str(state)]) == 3
    assert main(["status", "--date", "2025-09-30", "--state", str(state)]) == 0
