"""Reading the sheet through the Sheets API in chunks of rows, against the simulator."""

import csv
import io
from urllib.parse import quote

import httpx
import pytest

from common.sheet import SheetError, parse_csv
from common.sheets_api import A1Range, SheetReadError, _Pacer, read_sheet
from tests.simulator import simulator

HEADER = "last_updated_date,nik_identifier,name,phone_number\n"


def sheet_text(rows: int) -> str:
    """``rows`` data rows, with blank rows (one on a chunk boundary) and ragged ones."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for i in range(2, rows + 2):
        if i in (7, 1000, 1001, 1500):
            writer.writerow(["", "", "", ""])
        elif i % 97 == 0:
            writer.writerow(["23-09-2025", f"{i:016d}", "", ""])  # trailing empties left out
        else:
            writer.writerow(["23-09-2025", f"{i:016d}", f"NAME {i}", f"0812{i:08d}"])
    return HEADER + out.getvalue()


def read(sim_url: str, sheet_range: str = "Sheet1!A:D", **options: object) -> list[object]:
    rows = read_sheet(
        "sheet-1",
        sheet_range,
        api_url=sim_url,
        token=lambda: "t",
        sleep=lambda _s: None,
        **options,  # type: ignore[arg-type]
    )
    return list(rows)


def test_a_sheet_is_read_in_row_ranges_and_gives_the_rows_a_csv_export_gives() -> None:
    text = sheet_text(2_499)  # 2,500 rows with the header: a grid of 2,500
    with simulator(sheet_csv=text) as sim:
        rows = read(sim.url, chunk_rows=1_000)
        assert rows == parse_csv(text)
        assert sim.state.sheet_reads == [
            "'Sheet1'!A1:D1000",
            "'Sheet1'!A1001:D2000",
            "'Sheet1'!A2001:D2500",
        ]


def test_a_small_sheet_in_its_1000_row_grid_is_one_read() -> None:
    text = sheet_text(10)
    with simulator(sheet_csv=text) as sim:
        assert read(sim.url, "A:Z") == parse_csv(text)
        assert sim.state.sheet_reads == ["'Sheet1'!A1:Z1000"]


def test_a_failed_chunk_is_retried_and_nothing_is_lost() -> None:
    text = sheet_text(2_999)
    with simulator(sheet_csv=text) as sim:
        rows = read_sheet(
            "sheet-1",
            "Sheet1!A:D",
            api_url=sim.url,
            token=lambda: "t",
            chunk_rows=1_000,
            sleep=lambda _s: None,
        )
        first = next(rows)  # chunk 1 is in
        sim.state.fail_next_sheet(2, 503)  # a later chunk fails twice
        assert [first, *rows] == parse_csv(text)
        assert sim.state.sheet_fail_queue == []  # both failures were met, and retried
        assert len(sim.state.sheet_reads) == 3  # the failed ones never reached the values


def test_an_unreadable_or_headerless_sheet_fails_at_once() -> None:
    with simulator(sheet_csv=sheet_text(5)) as sim:
        with pytest.raises(SheetReadError, match="no sheet named 'Other'"):
            read_sheet("s", "Other!A:D", api_url=sim.url, token=lambda: "t")
        sim.state.fail_next_sheet(1, 403)
        with pytest.raises(SheetReadError, match="share the Sheet"):
            read_sheet("s", "A:D", api_url=sim.url, token=lambda: "t")
    with simulator(sheet_csv="\n\n") as sim, pytest.raises(SheetError, match="empty"):
        read_sheet("s", "A:D", api_url=sim.url, token=lambda: "t")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A:Z", A1Range(None, "A", "Z")),
        ("Sheet1!A:D", A1Range("Sheet1", "A", "D")),
        ("'Data ''25'!B2:F", A1Range("Data '25", "B", "F", 2)),
        ("Sheet1!A1:D500", A1Range("Sheet1", "A", "D", 1, 500)),
        ("Sheet1", A1Range("Sheet1")),
        ("Sheet1!2:10", A1Range("Sheet1", "", "", 2, 10)),
    ],
)
def test_sheet_ranges(text: str, expected: A1Range) -> None:
    assert A1Range.parse(text) == expected


def test_reads_are_paced_within_the_quota() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = _Pacer(3, lambda: now[0], sleep)
    for _ in range(7):
        pacer.wait()
        now[0] += 1.0  # each read takes a second
    assert slept == [57.0, 57.0]  # the 4th waits for the 1st to be a minute old, the 7th the 4th's


def values_get(sim_url: str, a1: str) -> httpx.Response:
    url = f"{sim_url}/v4/spreadsheets/sheet-1/values/{quote(a1, safe='')}"
    return httpx.get(url, headers={"Authorization": "Bearer t"})


def test_the_simulator_answers_a1_ranges_as_the_api_does() -> None:
    cases = [
        ("Sheet1!A2:B3", [["1", "a"], ["2"]]),
        ("A3:D", [["2"], [], ["4", "d", "x"]]),
        ("'Sheet1'!3:3", [["2"]]),
        ("Sheet1!C1:D1000", [["h3"], [], [], [], ["x"]]),
        ("Sheet1!A6:D9", None),  # inside the grid, past the data: no values
        ("Sheet1", [["h1", "h2", "h3"], ["1", "a"], ["2"], [], ["4", "d", "x"]]),
    ]
    with simulator(sheet_csv="h1,h2,h3\n1,a,\n2,,\n,,\n4,d,x\n") as sim:
        for a1, rows in cases:
            assert values_get(sim.url, a1).json().get("values") == rows, a1
        past = values_get(sim.url, "Sheet1!A1001:D2000")
        assert past.status_code == 400
        assert "exceeds grid limits. Max rows: 1000" in past.json()["error"]["message"]
        assert values_get(sim.url, "A990:B1200").json()["range"] == "Sheet1!A990:B1000"
        for bad in ("Other!A:B", "Sheet1!A", "Sheet1!A1:"):
            assert values_get(sim.url, bad).status_code == 400, bad
        grid = httpx.get(
            f"{sim.url}/v4/spreadsheets/sheet-1", headers={"Authorization": "Bearer t"}
        )
        (sheet,) = grid.json()["sheets"]
        assert sheet["properties"]["gridProperties"]["rowCount"] == 1000
