"""Rows needing a field officer go back to them: a report tab written with the Sheets API,
read back from the simulator exactly as the officers would see it."""

import json
from pathlib import Path

import httpx
import pytest

from common.config import load_settings
from common.officer_report import GUIDANCE, HEADER, officer_rows, report_values
from common.outcomes import NEEDS_OFFICER, RowOutcome, Status
from common.sheet import SheetRow
from common.sheets_api import SheetWriteError, read_sheet, replace_tab
from common.store import RunState, RunStatus, SqliteStore, WaitingRow
from jobs.cli import main
from jobs.task import run_task
from sim.sheets_tabs import split_range
from tests.simulator import API_KEY, SAMPLE_SHEET, run_cli, simulator

DATE = "2025-09-23"
TOKEN = lambda: "test-token"  # noqa: E731
# The sample's ten rows, then rows an officer has to fix (rows 12-16) and one no patient has.
MESSY_SHEET = SAMPLE_SHEET.read_text().rstrip("\n") + (
    "\n23-09-2025,3.17104E+15,AYU LESTARI,081298765432"
    "\n31-02-2025,3273044812940013,RINA DUA,082345678911"
    "\n22-09-2025,1275095011890014,LINDA DUA,021-5551234"
    "\n23-09-2025,9999999999999999,TIDAK ADA,081211112222"
    "\n23-09-2025,3171044203920015,MAYA '=HYPERLINK(1)',0812 3456 78x9\n"
)
NEEDING = {
    12: "invalid_nik",
    13: "invalid_date",
    14: "invalid_phone",
    15: "not_found",
    16: "invalid_phone",
}


def tab_values(url: str, spreadsheet: str, tab: str) -> list[list[str]]:
    """The tab as values.get serves it (what the officers' sheet shows)."""
    response = httpx.get(
        f"{url}/v4/spreadsheets/{spreadsheet}/values/'{tab}'!A:Z",
        headers={"Authorization": "Bearer officer"},
    )
    assert response.status_code == 200, response.text
    values: list[list[str]] = response.json()["values"]
    return values


@pytest.mark.parametrize(
    "a1,expected",
    [
        ("'phonesync'!A1", ("phonesync", "A1")),
        ("'it''s'!A1:B2", ("it's", "A1:B2")),
        ("Sheet1!A:D", ("Sheet1", "A:D")),
        ("A:Z", ("", "A:Z")),
        ("phonesync", ("phonesync", "")),
    ],
)
def test_a1_ranges_name_their_tab(a1: str, expected: tuple[str, str]) -> None:
    assert split_range(a1) == expected


def test_replace_tab_adds_the_tab_then_replaces_its_cells_and_values_get_serves_them() -> None:
    with simulator(sheet_csv=SAMPLE_SHEET.read_text()) as sim:
        replace_tab("officers", "it's", [["x", "=1+1"], ["y"]], api_url=sim.url, token=TOKEN)
        assert tab_values(sim.url, "officers", "it''s") == [["x", "=1+1"], ["y"]]
        replace_tab("officers", "it's", [["only"]], api_url=sim.url, token=TOKEN)
        assert tab_values(sim.url, "officers", "it''s") == [["only"]]  # nothing left over
        # another spreadsheet's tab and the source sheet are untouched
        assert sim.state.sheet_tabs.values("other", "it's") is None
        source = read_sheet("officers", "A:Z", api_url=sim.url, token=TOKEN)
        assert [r.row for r in source] == list(range(2, 12))


def test_a_spreadsheet_not_shared_for_editing_is_a_clear_error() -> None:
    with simulator() as sim:
        sim.state.fail_next_sheet(1, 403)
        with pytest.raises(SheetWriteError, match=r"share the report spreadsheet .* as Editor"):
            replace_tab("officers", "phonesync", [["x"]], api_url=sim.url, token=TOKEN, sleep=id)
        sim.state.fail_next_sheet(3, 503)
        with pytest.raises(SheetWriteError, match="failed after 3 attempts: HTTP 503"):
            replace_tab("officers", "phonesync", [["x"]], api_url=sim.url, token=TOKEN, sleep=id)


RUN = RunState(DATE, "exec-1", RunStatus.NEEDS_ACTION, 1, 0.0, 0.0)


def test_report_values_newest_first_in_indonesian_without_full_niks() -> None:
    rows = [
        SheetRow(2, "21-09-2025", "3171044203920001", "DEWI", "0812"),
        SheetRow(3, "23-09-2025", "3578106207900002", "MAYA 081234567890", "x"),
        SheetRow(4, "31-02-2025", "3273044812940003", "RINA", "0823"),
        SheetRow(5, "23-09-2025", "1111222233334444", "SOMEONE ELSE", "0823"),  # row edited since
    ]
    outcomes = [
        RowOutcome(2, Status.NOT_FOUND, "no patient", nik_masked="3171********0001"),
        RowOutcome(3, Status.INVALID_PHONE, "phone_number: letters", nik_masked="3578********0002"),
        RowOutcome(4, Status.INVALID_DATE, "not a real date", nik_masked="3273********0003"),
        RowOutcome(5, Status.AMBIGUOUS, "2 patients", nik_masked="9999********9999"),
        RowOutcome(6, Status.UPDATED, "mobile phone added", nik_masked="3174********0006"),
    ]
    waiting = officer_rows(RUN, outcomes, [], 30)
    assert [w.outcome.row for w in waiting] == [2, 3, 4, 5]  # not the updated row
    values = report_values(DATE, waiting, rows, "2025-09-23 23:05:00+07:00", 30)
    assert values[0][0].startswith("phonesync 2025-09-23: 4 baris perlu tindakan")
    assert values[1] == HEADER
    assert [v[0] for v in values[2:]] == ["3", "2", "5", "4"]  # 23-09, 21-09, unknown, invalid
    by_row = {v[0]: v for v in values[2:]}
    assert by_row["3"][1:5] == [
        "23-09-2025",
        "MAYA [redacted]",
        "3578********0002",
        "Nomor HP tidak valid",
    ]
    assert by_row["2"][4:6] == list(GUIDANCE[Status.NOT_FOUND])
    assert by_row["5"][1:3] == ["", ""]  # not another person's name
    text = json.dumps(values)
    assert "3171044203920001" not in text and "081234567890" not in text
    empty = report_values(DATE, officer_rows(RUN, outcomes[4:], [], 30), rows, "now", 30)
    assert empty == [
        ["phonesync 2025-09-23: tidak ada baris yang perlu tindakan (dibuat now)."],
        HEADER,
    ]


#: What the tab says the job does with its rows (the title), word for word.
TITLE = (
    "phonesync 2025-09-23: 1 baris perlu tindakan (dibuat t). Setiap malam phonesync memeriksa"
    " lagi setiap baris di bawah ini, sampai 30 hari sesudah tanggal barisnya (baris yang"
    " tanggalnya tidak valid: sesudah pertama kali dilaporkan). Perbaiki sel yang salah di"
    " baris itu sendiri (tanggalnya boleh tetap), atau ketik data yang benar sebagai baris baru"
    " dengan tanggal hari ini: sinkronisasi malam berikutnya memprosesnya dan baris itu hilang"
    " dari daftar ini. Pada malam terakhir baris mendapat pemberitahuan terakhir, lalu tidak"
    " diperiksa lagi."
)
#: Per status, the problem and what to do, as the tab says them.
ACTIONS = {
    Status.INVALID_DATE: (
        "Tanggal tidak valid",
        "Perbaiki kolom last_updated_date: tanggal dengan format HH-BB-TTTT (contoh 23-09-2025).",
    ),
    Status.INVALID_NIK: (
        "NIK tidak valid",
        "Perbaiki kolom nik_identifier: 16 angka tanpa spasi atau tanda lain. Jika NIK tampil"
        " seperti 3.17104E+15, ubah format kolom menjadi teks biasa lalu ketik ulang NIK.",
    ),
    Status.INVALID_PHONE: (
        "Nomor HP tidak valid",
        "Perbaiki kolom phone_number: nomor HP Indonesia yang diawali 08 atau +62 8, tanpa huruf"
        " atau nomor tambahan. Nomor lama pasien tidak diubah sampai baris ini diperbaiki.",
    ),
    Status.NOT_FOUND: (
        "NIK tidak ditemukan di registri",
        "Cocokkan NIK dengan KTP atau KK pasien dan perbaiki bila salah. Jika NIK sudah benar,"
        " laporkan ke tim registri agar pasien didaftarkan: NIK ini dicari lagi setiap malam.",
    ),
    Status.AMBIGUOUS: (
        "NIK tercatat pada lebih dari satu pasien",
        "Laporkan ke tim registri (sebutkan nomor baris): nomor HP tidak diperbarui sampai data"
        " ganda dibereskan. NIK ini dicari lagi setiap malam.",
    ),
}
LAST = (
    "PEMBERITAHUAN TERAKHIR: setelah malam ini baris ini tidak diperiksa lagi dan hilang dari"
    " daftar ini. Jika nomornya masih perlu diperbarui, ketik data yang benar sebagai baris"
    " baru dengan tanggal hari ini. "
)


@pytest.mark.parametrize("status", sorted(NEEDS_OFFICER))
@pytest.mark.parametrize(
    ("typed", "since", "until", "last"),
    [
        ("23-09-2025", "", "23-10-2025", False),  # found tonight: waits from tonight
        ("20-09-2025", "2025-09-21", "20-10-2025", False),  # waiting since an earlier night
        ("24-08-2025", "2025-08-25", "23-09-2025", True),  # 30 days after its date: last night
        ("31-02-2025", "2025-08-24", "23-09-2025", True),  # no date: 30 days after first reported
    ],
)
def test_the_tab_says_for_each_case_what_the_job_does(
    status: Status, typed: str, since: str, until: str, last: bool
) -> None:
    """The tab's text, cell by cell, for each problem and each point of a row's wait."""
    sheet_date = "" if typed.startswith("31-02") else "-".join(reversed(typed.split("-")))
    outcome = RowOutcome(7, status, "why, in English", nik_masked="3171********0001", since=since)
    stored = WaitingRow(
        sheet_date, 7, "k", "3171********0001", status.value, since or DATE, DATE, "exec-1", "r"
    )
    waiting = officer_rows(RUN, [outcome], [stored], 30)
    sheet = [SheetRow(7, typed, "3171044203920001", "DEWI", "0812")]
    values = report_values(DATE, waiting, sheet, "t", 30)
    problem, action = ACTIONS[status]
    assert values == [
        [TITLE],
        HEADER,
        [
            "7",
            typed,
            "DEWI",
            "3171********0001",
            problem,
            (LAST if last else "") + action,
            "-".join(reversed((since or DATE).split("-"))),
            until,
            "why, in English",
        ],
    ]


@pytest.mark.slow  # two task processes: ~5 s, not in scripts/test-fast
def test_a_messy_sheet_through_the_sheets_api_with_two_tasks(tmp_path: Path) -> None:
    """The issue's "done when": status exits non-zero naming the rejected rows, and every row
    needing an officer is in the report tab read back from the simulator."""
    state = tmp_path / "s.db"
    with simulator(sheet_csv=MESSY_SHEET) as sim:
        done = run_cli(
            "run",
            "--date",
            DATE,
            "--sheet-id",
            "officers-sheet",
            "--fhir-url",
            sim.fhir,
            "--tasks",
            "2",
            "--state",
            str(state),
            env={
                "FHIR_API_KEY": API_KEY,
                "SHEETS_API_URL": sim.url,
                "SHEETS_ACCESS_TOKEN": "test-token",
                "REPORT_SHEET_ID": "officers-sheet",  # the officers' own sheet, a new tab
            },
        )
        assert done.returncode == 0, done.stderr
        assert "run 2025-09-23: needs_action" in done.stderr
        status = run_cli("status", "--date", DATE, "--state", str(state))
        assert status.returncode == 3, status.stdout
        for row, reason in NEEDING.items():
            assert f"row {row:>5}  {reason}" in status.stdout
        assert "report tab written: 5 row(s) to tab 'phonesync'" in status.stdout
        values = tab_values(sim.url, "officers-sheet", "phonesync")
    assert values[1] == HEADER
    assert {int(v[0]): v for v in values[2:]}.keys() == NEEDING.keys()
    by_row = {int(v[0]): v for v in values[2:]}
    assert by_row[15][1:4] == ["23-09-2025", "TIDAK ADA", "9999********9999"]
    assert by_row[16][2] == "MAYA '=HYPERLINK(1)'"  # as typed, and text (RAW), not a formula
    assert [int(v[0]) for v in values[2:]] == [16, 15, 12, 14, 13]  # 23-09, 22-09, no date
    text = json.dumps(values)
    for secret in ("3171044203920015", "081298765432", "081211112222", "9999999999999999"):
        assert secret not in text


def test_a_report_that_cannot_be_written_never_fails_the_run(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(MESSY_SHEET)
    state = tmp_path / "s.db"
    with simulator() as sim:
        sim.state.fail_next_sheet(1, 403)  # the CSV is read locally: the report's call fails
        env = {
            "FHIR_BASE_URL": sim.fhir,
            "FHIR_API_KEY": API_KEY,
            "SHEET_CSV": str(sheet),
            "RUN_DATE": DATE,
            "STATE_PATH": str(state),
            "SHEETS_API_URL": sim.url,
            "SHEETS_ACCESS_TOKEN": "test-token",
            "REPORT_SHEET_ID": "officers-sheet",
            "CLOUD_RUN_EXECUTION": "exec-1",
        }
        assert run_task(load_settings(env)) == 0
        assert sim.state.sheet_tabs.values("officers-sheet", "phonesync") is None
    store = SqliteStore(state)
    run = store.get_run(DATE)
    store.close()
    assert run is not None and run.status.value == "needs_action"
    assert run.report.startswith("failed: SheetWriteError: Sheets API answered 403")
    assert main(["status", "--date", DATE, "--state", str(state)]) == 3
