"""Which rows take part in a run and which one wins for each NIK."""

from datetime import date

from common.outcomes import Status
from common.planning import DateWindow, plan_rows
from common.sheet import SheetRow

NIK_A = "3171044203920001"
NIK_B = "3578106207900002"


def row(n: int, day: str, nik: str, phone: str) -> SheetRow:
    return SheetRow(row=n, date=day, nik=nik, name="", phone=phone)


def statuses(plan) -> dict[int, Status]:  # type: ignore[no-untyped-def]
    out = {o.row: o.status for o in plan.decided}
    out.update({row: Status.OTHER_DATE for row in plan.other_rows})  # counted, not recorded
    out.update({c.row: Status.UPDATED for c in plan.candidates})  # "goes on to the registry"
    return out


def test_last_row_in_sheet_order_wins_for_a_nik() -> None:
    plan = plan_rows(
        [row(2, "23-09-2025", NIK_A, "081111111111"), row(3, "23-09-2025", NIK_A, "082222222222")]
    )
    assert [(c.row, c.phone.national) for c in plan.candidates] == [(3, "082222222222")]
    (superseded,) = plan.decided
    assert (superseded.row, superseded.status) == (2, Status.SUPERSEDED)
    assert "row 3" in superseded.reason


def test_without_a_date_the_latest_date_wins_even_earlier_in_the_sheet() -> None:
    plan = plan_rows(
        [row(2, "24-09-2025", NIK_A, "081111111111"), row(3, "23-09-2025", NIK_A, "082222222222")]
    )
    assert [c.row for c in plan.candidates] == [2]
    assert statuses(plan)[3] is Status.SUPERSEDED


def test_with_a_date_only_that_dates_rows_take_part() -> None:
    rows = [
        row(2, "24-09-2025", NIK_A, "081111111111"),
        row(3, "23-09-2025", NIK_B, "082222222222"),
        row(4, "22-09-2025", NIK_B, "083333333333"),
    ]
    plan = plan_rows(rows, DateWindow.exactly(date(2025, 9, 23)))
    assert [c.row for c in plan.candidates] == [3]
    assert statuses(plan)[2] is Status.OTHER_DATE and statuses(plan)[4] is Status.OTHER_DATE


def test_a_row_dated_after_the_window_supersedes_the_nik_inside_it() -> None:
    """Rerunning an old date never brings back a number the officer has replaced since."""
    rows = [
        row(2, "24-09-2025", NIK_A, "081111111111"),
        row(3, "23-09-2025", NIK_A, "082222222222"),
        row(4, "25-09-2025", NIK_A, "not a phone"),  # the latest: even an invalid one wins
        row(5, "23-09-2025", NIK_B, "083333333333"),
        row(6, "24-09-2025", "3.57811E+15", "084444444444"),  # no NIK: supersedes nothing
    ]
    plan = plan_rows(rows, DateWindow.exactly(date(2025, 9, 23)))
    assert [c.row for c in plan.candidates] == [5]
    assert statuses(plan) == {
        2: Status.OTHER_DATE,
        3: Status.SUPERSEDED,
        4: Status.OTHER_DATE,
        5: Status.UPDATED,
        6: Status.OTHER_DATE,
    }
    (superseded,) = [o for o in plan.decided if o.row == 3]
    assert "row 4 (dated 2025-09-25, after this run)" in superseded.reason


def test_a_date_window_takes_the_latest_row_within_it() -> None:
    rows = [
        row(2, "21-09-2025", NIK_A, "081111111111"),
        row(3, "22-09-2025", NIK_B, "082222222222"),
        row(4, "23-09-2025", NIK_B, "083333333333"),
    ]
    plan = plan_rows(rows, DateWindow(date(2025, 9, 22), date(2025, 9, 23)))
    assert statuses(plan) == {2: Status.OTHER_DATE, 3: Status.SUPERSEDED, 4: Status.UPDATED}


def test_an_invalid_winner_applies_nothing_rather_than_an_older_number() -> None:
    plan = plan_rows(
        [row(2, "23-09-2025", NIK_A, "081111111111"), row(3, "23-09-2025", NIK_A, "o82222222222")]
    )
    assert plan.candidates == []
    assert statuses(plan) == {2: Status.SUPERSEDED, 3: Status.INVALID_PHONE}
    invalid = next(o for o in plan.decided if o.row == 3)
    assert invalid.reason.startswith("phone_number: contains letters")
    assert "nothing applied" in invalid.reason


def test_invalid_cells_are_reported_with_column_and_the_other_rows_go_on() -> None:
    plan = plan_rows(
        [
            row(2, "31-02-2025", NIK_A, "081111111111"),
            row(3, "23-09-2025", "3.17104E+15", "081111111111"),
            row(4, "23-09-2025", NIK_B, "021-5551234"),
            row(5, "23-09-2025", NIK_A, "0812 2222 2222"),
        ]
    )
    assert statuses(plan) == {
        2: Status.INVALID_DATE,
        3: Status.INVALID_NIK,
        4: Status.INVALID_PHONE,
        5: Status.UPDATED,
    }
    reasons = {o.row: o.reason for o in plan.decided}
    assert reasons[2].startswith("last_updated_date:")
    assert reasons[3].startswith("nik_identifier:")
    assert reasons[4].startswith("phone_number:")


def test_outcomes_never_carry_a_full_nik() -> None:
    plan = plan_rows(
        [row(2, "23-09-2025", NIK_A, "081111111111"), row(3, "23-09-2025", NIK_A, "bad")]
    )
    for outcome in plan.decided:
        assert NIK_A not in repr(outcome)
        assert outcome.nik_masked == "3171********0001"
