"""Which rows take part in a run and which one wins for each NIK."""

from datetime import date

from common.outcomes import Status
from common.planning import DateWindow, Recheck, plan_rows
from common.privacy import keyed_hash, mask_nik
from common.sheet import SheetRow
from common.store import WaitingRow

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


# -- rows waiting on a field officer, taken up again by a later night ------------------------

NIGHT = DateWindow(date(2025, 9, 24), date(2025, 9, 25))  # the night of the 25th
KEY = b"test ledger key"


def nik_key(nik: str) -> str:
    return keyed_hash(nik, KEY)


def waits(row: int, day: str, nik: str, status: Status, since: str = "2025-09-20") -> WaitingRow:
    return WaitingRow(
        sheet_date=day,
        row=row,
        nik_key=nik_key(nik) if len(nik) == 16 and nik.isdigit() else "",
        nik_masked=mask_nik(nik),
        status=status.value,
        since=since,
        run_date="2025-09-24",
        execution="exec-24",
        read_at="r",
    )


def recheck(*waiting: WaitingRow) -> Recheck:
    return Recheck(list(waiting), nik_key, date(2025, 8, 26))  # ACTION_DAYS 30


def test_a_waiting_row_still_wrong_is_decided_again_and_its_dates_other_rows_counted() -> None:
    rows = [
        row(2, "20-09-2025", NIK_A, "0812-345"),  # waiting: phone still wrong
        row(3, "20-09-2025", NIK_B, "082222222222"),  # same date, never rejected: counted
        row(4, "25-09-2025", "3578106207900009", "083333333333"),
    ]
    plan = plan_rows(rows, NIGHT, recheck(waits(2, "2025-09-20", NIK_A, Status.INVALID_PHONE)))
    assert statuses(plan) == {2: Status.INVALID_PHONE, 3: Status.OTHER_DATE, 4: Status.UPDATED}
    (still,) = [o for o in plan.decided if o.row == 2]
    assert still.since == "2025-09-20"
    assert plan.places[2] == ("2025-09-20", NIK_A)
    assert list(plan.taken_up) == [2]
    assert list(plan.other_rows) == [3]


def test_a_fixed_row_is_found_by_its_number_or_its_nik_and_goes_to_the_registry() -> None:
    waiting = [
        waits(2, "2025-09-20", NIK_A, Status.INVALID_PHONE),  # fixed in place
        waits(9, "2025-09-20", NIK_B, Status.NOT_FOUND),  # moved by a sort: now row 3
        waits(4, "2025-09-21", "3.17104E+15", Status.INVALID_NIK),  # NIK retyped in place
    ]
    rows = [
        row(2, "20-09-2025", NIK_A, "081111111111"),
        row(3, "20-09-2025", NIK_B, "082222222222"),
        row(4, "21-09-2025", "3171044203920004", "083333333333"),
        row(9, "20-09-2025", "3171044203920009", "084444444444"),  # another row now at 9
    ]
    plan = plan_rows(rows, NIGHT, recheck(*waiting))
    taken = {c.row: (c.nik, plan.since(c.row)) for c in plan.candidates}
    assert taken == {
        2: (NIK_A, "2025-09-20"),
        3: (NIK_B, "2025-09-20"),
        4: ("3171044203920004", "2025-09-20"),
        9: ("3171044203920009", "2025-09-20"),  # at the waiting row's place: checked too
    }


def test_a_row_taken_up_is_superseded_by_any_later_row_of_its_nik() -> None:
    waiting = [
        waits(2, "2025-09-20", NIK_A, Status.INVALID_PHONE),
        waits(3, "2025-09-20", NIK_B, Status.INVALID_NIK),  # its NIK, retyped, is NIK_B's
    ]
    rows = [
        row(2, "20-09-2025", NIK_A, "081111111111"),  # fixed, but …
        row(3, "20-09-2025", NIK_B, "082222222222"),  # fixed, but …
        row(4, "22-09-2025", NIK_A, "085555555555"),  # … NIK_A has a later row (not in the run)
        row(5, "25-09-2025", NIK_B, "086666666666"),  # … NIK_B one in the night's window
    ]
    plan = plan_rows(rows, NIGHT, recheck(*waiting))
    assert statuses(plan) == {
        2: Status.SUPERSEDED,
        3: Status.SUPERSEDED,
        4: Status.OTHER_DATE,
        5: Status.UPDATED,
    }
    reasons = {o.row: o.reason for o in plan.decided}
    assert "row 4 (dated 2025-09-22, not in this run)" in reasons[2]
    assert "row 5 gives a newer number" in reasons[3]
    assert all(o.since == "2025-09-20" for o in plan.decided)  # they waited: the store forgets


def test_an_unreadable_date_waits_from_its_first_report_then_is_counted() -> None:
    fresh = waits(2, "", NIK_A, Status.INVALID_DATE, since="2025-09-01")
    old = waits(3, "", NIK_B, Status.INVALID_DATE, since="2025-08-25")  # before 26-08: past
    rows = [
        row(2, "31-02-2025", NIK_A, "081111111111"),
        row(4, "32-09-2025", NIK_B, "082222222222"),  # moved from row 3: found by its NIK
        row(5, "30-02-2025", "3171044203920005", "083333333333"),  # new
    ]
    plan = plan_rows(rows, NIGHT, recheck(fresh, old))
    by_row = {o.row: o for o in plan.decided}
    assert (by_row[2].status, by_row[2].since) == (Status.INVALID_DATE, "2025-09-01")
    assert (by_row[4].status, by_row[4].since) == (Status.OTHER_DATE, "2025-08-25")
    assert "no longer checked" in by_row[4].reason
    assert (by_row[5].status, by_row[5].since) == (Status.INVALID_DATE, "")
    # its date fixed, even to one outside the night's window: it goes to the registry
    fixed = plan_rows([row(2, "21-09-2025", NIK_A, "081111111111")], NIGHT, recheck(fresh))
    assert [(c.row, fixed.since(c.row)) for c in fixed.candidates] == [(2, "2025-09-01")]


def test_without_waiting_rows_nothing_outside_the_window_is_parsed_further() -> None:
    """Cost follows the work: rows of other dates stay a number and a date each."""
    rows = [row(n, "20-09-2025", NIK_A, "0812") for n in range(2, 50)]
    plan = plan_rows(rows, NIGHT, recheck())
    assert plan.decided == [] and plan.candidates == [] and len(plan.other_rows) == 48
