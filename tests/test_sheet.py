"""Reading the sheet: header names, CSV quirks, row numbers, dates and NIKs."""

from datetime import date
from pathlib import Path

import pytest

from common.errors import InputError
from common.sheet import (
    InvalidCell,
    SheetError,
    parse_csv,
    parse_date,
    parse_nik,
    read_csv,
    rows_from_values,
)


def test_columns_are_found_by_name_in_any_order_case_and_spacing() -> None:
    rows = parse_csv(
        " Phone Number ,extra,NIK_Identifier,LAST_UPDATED_DATE\n0812,x,3171044203920001,23-09-2025\n"
    )
    assert rows[0].phone == "0812"
    assert rows[0].nik == "3171044203920001"
    assert rows[0].date == "23-09-2025"
    assert rows[0].name == ""  # the name column is optional


def test_missing_required_column_names_it() -> None:
    with pytest.raises(SheetError, match="'phone_number'"):
        parse_csv("last_updated_date,nik_identifier,name\n")
    assert issubclass(SheetError, InputError)  # → exit 2


def test_bom_crlf_quoted_commas_and_blank_rows() -> None:
    text = (
        "\ufefflast_updated_date,nik_identifier,name,phone_number\r\n"
        '23-09-2025,3171044203920001,"SARI, DEWI",081234567890\r\n'
        ",,,\r\n"
        "\r\n"
        "23-09-2025,3578106207900002,MAYA,6285678901234\r\n"
    )
    rows = parse_csv(text)
    assert [(r.row, r.name) for r in rows] == [(2, "SARI, DEWI"), (5, "MAYA")]


def test_a_csv_file_is_read_as_its_rows_are_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "sheet.csv"
    path.write_bytes(
        b"\xef\xbb\xbfnik_identifier,phone_number,last_updated_date\r\n"
        + b"3171044203920001,0812,23-09-2025\r\n" * 10_000
        + b"\xff\xfe not UTF-8\n"
    )
    rows = read_csv(path)  # the header is checked at once…
    assert [next(rows).row for _ in range(3)] == [2, 3, 4]  # …the rows come as they are read
    with pytest.raises(InputError, match="row 10002 is not UTF-8"):
        list(rows)
    path.write_text("nik_identifier,phone_number\n")
    with pytest.raises(SheetError, match="'last_updated_date'"):
        read_csv(path)
    path.write_text("")
    with pytest.raises(SheetError, match="the sheet is empty"):
        read_csv(path)


def test_row_numbers_are_what_a_sheet_user_sees() -> None:
    values = [["last_updated_date", "nik_identifier", "phone_number"], ["a", "b", "c"], [], ["d"]]
    assert [r.row for r in rows_from_values(values)] == [2, 4]


def test_ragged_rows_from_the_sheets_api_are_padded() -> None:
    values = [["last_updated_date", "nik_identifier", "name", "phone_number"], ["23-09-2025", "1"]]
    (row,) = rows_from_values(values)
    assert row.phone == "" and row.name == ""


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("23-09-2025", date(2025, 9, 23)),
        ("3-9-2025", date(2025, 9, 3)),
        ("23/09/2025", date(2025, 9, 23)),
        ("2025-09-23", date(2025, 9, 23)),
        (" 29-02-2024 ", date(2024, 2, 29)),
    ],
)
def test_accepted_dates(cell: str, expected: date) -> None:
    assert parse_date(cell) == expected


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("31-02-2025", "not a real calendar date"),
        ("29-02-2025", "not a real calendar date"),
        ("09-23-2025", "not a real calendar date"),  # month-first is not a format we accept
        ("23.09.2025", "DD-MM-YYYY"),
        ("23 Sep 2025", "DD-MM-YYYY"),
        ("45923", "DD-MM-YYYY"),  # a date the sheet turned into a serial number
        ("", "empty"),
    ],
)
def test_rejected_dates(cell: str, reason: str) -> None:
    with pytest.raises(InvalidCell, match=reason) as exc:
        parse_date(cell)
    assert exc.value.column == "last_updated_date"


def test_nik_whitespace_is_removed() -> None:
    assert parse_nik(" 3171 0442 0392 0001 ") == "3171044203920001"
    assert parse_nik("\uff13\uff11\uff17\uff11044203920001") == "3171044203920001"  # full-width


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("3.17104E+15", "turned into a number"),
        ("317104420392000", "has 15 digits"),
        ("31710442039200011", "has 17 digits"),
        ("3171O44203920001", "16 digits and nothing else"),
        ("", "empty"),
        ("\u0663\u0661\u0667\u0661044203920001", "digits other than 0-9"),  # Arabic-Indic
    ],
)
def test_rejected_niks(cell: str, reason: str) -> None:
    with pytest.raises(InvalidCell, match=reason) as exc:
        parse_nik(cell)
    assert exc.value.column == "nik_identifier"


HEADER = "last_updated_date,nik_identifier,name,phone_number\r\n"


@pytest.mark.parametrize(
    ("sheet", "row"),
    [
        (
            HEADER
            + '23-09-2025,3171044203920001,"DEWI\r\nSARI",0812\r\n\r\n'
            + "23-09-2025,3171044203920002,JOSÉ,0812\r\n",
            4,
        ),
        (HEADER + '23-09-2025,3171044203920001,"DEWI\r\nRENÉ",0812\r\n', 2),  # a cell's 2nd line
        (
            "\ufeff" + HEADER + "23-09-2025,3171044203920001,A,0812\r\n" * 5000 + "Señora,x,y,z\n",
            5002,
        ),
    ],
    ids=["after a two-line cell and a blank row", "in a cell's second line", "past the first 8 KB"],
)
def test_a_latin1_sheet_names_the_row_and_how_to_save_it(
    tmp_path: Path, sheet: str, row: int
) -> None:
    path = tmp_path / "sheet.csv"
    path.write_bytes(sheet.encode("latin-1", "ignore"))  # "ignore": the BOM has no Latin-1 form
    with pytest.raises(InputError) as raised:
        list(read_csv(path))
    message = str(raised.value)
    assert f"sheet file {path}: row {row} is not UTF-8 text" in message
    assert "save it as CSV UTF-8" in message and "\n" not in message


def test_a_utf16_sheet_is_named_as_such_with_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "sheet.csv"
    path.write_text(HEADER + "23-09-2025,3171044203920001,A,0812\r\n", encoding="utf-16")
    with pytest.raises(InputError) as raised:
        read_csv(path)
    assert "the file is UTF-16, not UTF-8 (from row 1 on): save it as CSV UTF-8" in str(
        raised.value
    )
