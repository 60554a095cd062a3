"""The latest read of the sheet decides: corrections survive re-sorts, deletions and reruns.

Runs go through ``run_task`` (task 0's read stamp, the manifest, the ledger) against the FHIR
simulator, with a SQLite store; replays through ``replay_item``, the replay function's core.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from common.config import load_settings
from common.fhir import FhirClient
from common.fhir._client import NIK_SYSTEM
from common.outcomes import Status
from common.planning import DateWindow, plan_rows
from common.replay import replay_item
from common.runtime import fhir_settings, ledger_key
from common.sheet import SheetRow
from common.store import SqliteStore, WorkItem
from common.sync import Ledger
from jobs.task import run_task
from tests.simulator import API_KEY, RunningSim, sample, simulator

DATE = "2025-09-23"
HEADER = "last_updated_date,nik_identifier,name,phone_number\n"
NIK = "3171044203920001"  # patient-001


def mobile(sim: RunningSim, pid: str) -> str | None:
    patient = sim.state.patient(pid) or {}
    for entry in patient.get("telecom") or ():
        if entry.get("system") == "phone" and entry.get("use") == "mobile":
            return str(entry["value"])
    return None


def run_on(sim: RunningSim, tmp: Path, rows: list[str], execution: str, **extra: str) -> list[int]:
    sheet = tmp / f"{execution}.csv"
    sheet.write_text(HEADER + "".join(r + "\n" for r in rows))
    env = {
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "SHEET_CSV": str(sheet),
        "RUN_DATE": DATE,
        "STATE_PATH": str(tmp / "state.db"),
        "FHIR_BACKOFF_SECONDS": "0.01",
        "FHIR_TIMEOUT_SECONDS": "2",
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
        "CLOUD_RUN_EXECUTION": execution,
        **extra,
    }
    return [run_task(load_settings(env))]


def outcomes(tmp: Path, day: str = DATE) -> dict[int, tuple[str, str]]:
    store = SqliteStore(tmp / "state.db")
    try:
        return {o.row: (o.status.value, o.reason) for o in store.outcomes(day)}
    finally:
        store.close()


def test_a_same_date_correction_moved_up_by_a_resort_wins_on_rerun(tmp_path: Path) -> None:
    """The issue's case: row 11 was applied; the sheet is sorted and the officer's same-date
    correction now sits at row 2. The rerun must apply the correction, not call it stale."""
    others = [f"23-09-2025,357810620790000{i},X,08567890123{i}" for i in range(2, 10)]
    first = [*others, f"23-09-2025,{NIK},DEWI,081234567890"]  # NIK at row 10 (the last)
    with simulator() as sim:
        assert run_on(sim, tmp_path, first, "exec-1") == [0]
        assert mobile(sim, "patient-001") == "081234567890"
        # sorted by NIK descending, and the officer corrected the number on the same date
        second = [f"23-09-2025,{NIK},DEWI,081399998888", *others]
        assert run_on(sim, tmp_path, second, "exec-2") == [0]
        assert outcomes(tmp_path)[2][0] == "updated", outcomes(tmp_path)[2]
        assert mobile(sim, "patient-001") == "081399998888"
        store = SqliteStore(tmp_path / "state.db")
        run = store.get_run(DATE)
        store.close()
        assert run.counts == {"updated": 1, "already_applied": 1, "not_found": 7}


def test_rerunning_an_old_date_keeps_the_later_dated_number(tmp_path: Path) -> None:
    """A rerun of the 22nd, with the officer's row of the 23rd outside its window, must not
    bring back the 22nd's number: not with the ledger, and not after the state was lost."""
    rows = [f"22-09-2025,{NIK},DEWI,081111111111", f"23-09-2025,{NIK},DEWI,082222222222"]
    with simulator() as sim:
        assert run_on(sim, tmp_path, rows, "exec-23") == [0]
        assert mobile(sim, "patient-001") == "082222222222"
        for state in ("state.db", "lost.db"):
            rerun = run_on(
                sim,
                tmp_path,
                rows,
                f"exec-22-{state}",
                RUN_DATE="2025-09-22",
                LOOKBACK_DAYS="0",
                STATE_PATH=str(tmp_path / state),
            )
            assert rerun == [0]
            assert mobile(sim, "patient-001") == "082222222222"
        status, reason = outcomes(tmp_path, "2025-09-22")[2]
        assert status == "superseded" and "row 3 (dated 2025-09-23, after this run)" in reason


def test_a_replay_never_overwrites_a_number_a_later_read_applied(tmp_path: Path) -> None:
    """Night of the 23rd: FHIR is down, the row is deferred. By the 25th the officer has
    entered a newer number (dated the 25th, outside the 23rd's window) and that night applied
    it. The 23rd's message, replayed after, is stale: the ledger holds a later read's number."""
    with simulator() as sim:
        sim.state.set_down(True)
        rows = [f"23-09-2025,{NIK},DEWI,081111111111"]
        assert run_on(sim, tmp_path, rows, "exec-23", **DOWN) == [0]
        messages = [("exec-23", i) for i in deferred_items(tmp_path, "exec-23")]
        assert len(messages) == 1
        sim.state.set_down(False)
        rows.append(f"25-09-2025,{NIK},DEWI,082222222222")
        assert run_on(sim, tmp_path, rows, "exec-25", RUN_DATE="2025-09-25") == [0]
        assert mobile(sim, "patient-001") == "082222222222"
        sim.state.reset_stats()
        replay_all(sim, tmp_path, messages)
        assert mobile(sim, "patient-001") == "082222222222"
        assert sim.state.stats()["requests"] == {}  # decided from the ledger alone
        status, reason = outcomes(tmp_path)[2]
        assert status == "stale" and "later read" in reason


def test_a_number_confirmed_by_a_later_read_is_not_replaced_by_an_older_replay(
    tmp_path: Path,
) -> None:
    """The 23rd applies A. On the 25th the officer enters B; FHIR is down, B is deferred. On
    the 26th the officer goes back to A (a new row) and that night finds A already applied:
    that read confirms A, so the 25th's message for B, replayed after, is stale."""
    with simulator() as sim:
        rows = [f"23-09-2025,{NIK},DEWI,081111111111"]
        assert run_on(sim, tmp_path, rows, "exec-23") == [0]
        sim.state.set_down(True)
        rows.append(f"25-09-2025,{NIK},DEWI,082222222222")
        assert run_on(sim, tmp_path, rows, "exec-25", RUN_DATE="2025-09-25", **DOWN) == [0]
        store = SqliteStore(tmp_path / "state.db")
        deferred = store.read_shard("2025-09-25", "exec-25", 0) or []
        store.close()
        sim.state.set_down(False)
        rows[1] = f"26-09-2025,{NIK},DEWI,081111111111"
        night = run_on(sim, tmp_path, rows, "exec-26", RUN_DATE="2025-09-26", LOOKBACK_DAYS="0")
        assert night == [0] and outcomes(tmp_path, "2025-09-26")[3][0] == "already_applied"
        replay_all(sim, tmp_path, [("exec-25", i) for i in deferred], day="2025-09-25")
        assert mobile(sim, "patient-001") == "081111111111"
        assert outcomes(tmp_path, "2025-09-25")[3][0] == "stale"


# -- the property: whatever the edits, the registry ends as a fresh run on the final sheet --


def nik_of(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == NIK_SYSTEM)


# Small pools, so that rows of one NIK meet often; repeats weight the draws.
NIKS = [nik_of(p) for p in sample()[:2]] * 2 + ["9999999999999999"]  # + one no patient has
DATES = ["21-09-2025", "22-09-2025", "23-09-2025", "23-09-2025", "24-09-2025"]  # window 22-23
PHONES = ["081111111111", "082222222222", "083333333333"] * 2 + ["0812-345"]  # last: invalid
LOOKBACK = {"LOOKBACK_DAYS": "1"}
DOWN = {"FHIR_MAX_ATTEMPTS": "1", "FHIR_DEADLINE_SECONDS": "0.2"}

Row = tuple[str, str, str]  # date, NIK, phone
rows_st = st.tuples(st.sampled_from(DATES), st.sampled_from(NIKS), st.sampled_from(PHONES))
edit_st = st.one_of(
    st.tuples(st.just("resort"), st.sampled_from(["reverse", "date", "nik", "phone"])),
    st.tuples(st.just("move"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("delete"), st.integers(0, 20)),
    st.tuples(st.just("insert"), st.integers(0, 20), rows_st),
    st.tuples(st.just("correct"), st.integers(0, 20), st.sampled_from(PHONES)),
    st.tuples(st.just("redate"), st.integers(0, 20), st.sampled_from(DATES)),
)

down_st = st.sampled_from([False, False, True])  # a run during an FHIR outage defers its rows


def edited(sheet: list[Row], edits: list[Any]) -> list[Row]:
    out = list(sheet)
    for edit in edits:
        kind = edit[0]
        if kind == "insert":
            out.insert(edit[1] % (len(out) + 1), edit[2])
        elif not out:
            continue
        elif kind == "resort":  # an officer sorts the sheet by a column, or reverses it
            if edit[1] == "reverse":
                out.reverse()
            else:
                column = ["date", "nik", "phone"].index(edit[1])
                out.sort(
                    key=lambda r: (
                        (r[column][6:], r[column][3:5], r[column][:2]) if column == 0 else r[column]
                    ),
                    reverse=True,
                )
        elif kind == "move":  # drag a row elsewhere
            out.insert(edit[2] % len(out), out.pop(edit[1] % len(out)))
        elif kind == "delete":
            del out[edit[1] % len(out)]
        elif kind == "correct":  # the officer retypes the number, same date
            i = edit[1] % len(out)
            out[i] = (out[i][0], out[i][1], edit[2])
        else:  # a row's date changes, e.g. a later-dated entry
            i = edit[1] % len(out)
            out[i] = (edit[2], out[i][1], out[i][2])
    return out


def as_csv(sheet: list[Row]) -> list[str]:
    return [f"{d},{nik},X,{phone}" for d, nik, phone in sheet]


def mobiles(sim: RunningSim) -> dict[str, str | None]:
    return {nik_of(p): mobile(sim, p["id"]) for p in sample()}


def deferred_items(tmp: Path, execution: str) -> list[WorkItem]:
    """What the run published for replay: its manifest items whose outcome is deferred."""
    store = SqliteStore(tmp / "state.db")
    try:
        deferred = {o.row for o in store.outcomes(DATE) if o.status is Status.DEFERRED}
        return [i for i in store.read_shard(DATE, execution, 0) or [] if i.row in deferred]
    finally:
        store.close()


def replay_all(
    sim: RunningSim, tmp: Path, messages: list[tuple[str, WorkItem]], day: str = DATE
) -> None:
    """Each message through the replay function's core, as Pub/Sub would deliver it."""
    config = load_settings(
        {"FHIR_BASE_URL": sim.fhir, "FHIR_API_KEY": API_KEY, "STATE_PATH": str(tmp / "state.db")},
        role="replay",
    )

    async def replay() -> None:
        store = SqliteStore(tmp / "state.db")
        try:
            async with FhirClient(fhir_settings(config)) as client:
                for execution, item in messages:
                    await replay_item(
                        item, day, execution, client, store, Ledger(ledger_key(config))
                    )
        finally:
            store.close()

    asyncio.run(replay())


def final_candidates(sheet: list[Row]) -> set[str]:
    """NIKs the final sheet gives a number in the run's window (a valid winning row)."""
    window = DateWindow(date(2025, 9, 22), date(2025, 9, 23))
    rows = [SheetRow(n, d, nik, "", phone) for n, (d, nik, phone) in enumerate(sheet, start=2)]
    return {c.nik for c in plan_rows(rows, window).candidates}


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[RunningSim, RunningSim]]:
    """One registry for the runs under test, one for the fresh runs they are compared with."""
    with simulator() as sim, simulator() as fresh:
        yield sim, fresh


def assert_as_fresh(
    sim: RunningSim, fresh: RunningSim, sheet: list[Row], before: dict[str, str | None]
) -> None:
    """NIKs the sheet gives a number hold what a fresh run on it gives; the others hold
    what they held before (``before``)."""
    fresh.state.load(sample())
    with tempfile.TemporaryDirectory() as folder:
        assert run_on(fresh, Path(folder), as_csv(sheet), "exec-fresh", **LOOKBACK) == [0]
    expected, now, decided = mobiles(fresh), mobiles(sim), final_candidates(sheet)
    for nik in now:
        assert now[nik] == (expected[nik] if nik in decided else before[nik]), (nik, sheet)


# The case: the sheet is reversed, so the NIK's other same-date row is now its last
# row — at a lower row number than the one applied before.
@example(
    first=[
        (DATES[2], NIKS[1], PHONES[0]),
        (DATES[2], NIKS[0], PHONES[0]),
        (DATES[2], NIKS[0], PHONES[1]),
    ],
    rounds=[([("resort", "reverse")], False)],
    first_down=False,
    order=random.Random(0),
)
# An outage defers a number; the officer corrects it (then mistypes it); the rerun applies
# the correction (then nothing). The old message, replayed last, must change nothing.
@example(
    first=[(DATES[2], NIKS[0], PHONES[0])],
    rounds=[([("correct", 0, PHONES[1])], False)],
    first_down=True,
    order=random.Random(0),
)
@example(
    first=[(DATES[2], NIKS[0], PHONES[0])],
    rounds=[([("correct", 0, PHONES[-1])], False)],
    first_down=True,
    order=random.Random(0),
)
@pytest.mark.slow  # 30 examples of whole runs: ~30 s, not in scripts/test-fast
@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    first=st.lists(rows_st, max_size=8),
    rounds=st.lists(
        st.tuples(st.lists(edit_st, min_size=1, max_size=4), down_st), min_size=1, max_size=3
    ),
    first_down=down_st,
    order=st.randoms(use_true_random=False),
)
def test_the_registry_ends_as_a_fresh_run_on_the_final_sheet(
    sims: tuple[RunningSim, RunningSim],
    first: list[Row],
    rounds: list[tuple[list[Any], bool]],
    first_down: bool,
    order: Any,
) -> None:
    """Run → edit → rerun …, some runs during an outage, then every deferred message replayed
    in any order. After each run that reached the registry, and at the end, the NIKs the
    current sheet gives a number hold exactly what a fresh run on that sheet gives them; a
    NIK it gives none (all its rows deleted, an invalid latest phone, a later-dated row)
    keeps what it had before that run, and old replays do not change it either."""
    sim, fresh = sims
    sheets = [first]
    for edits, _down in rounds:
        sheets.append(edited(sheets[-1], edits))
    downs = [first_down, *(down for _edits, down in rounds)]
    sim.state.load(sample())
    messages: list[tuple[str, WorkItem]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for n, (sheet, down) in enumerate(zip(sheets, downs, strict=True)):
            before = mobiles(sim)
            sim.state.set_down(down)
            execution = f"exec-{n}"
            extra = {**LOOKBACK, **(DOWN if down else {})}
            assert run_on(sim, tmp, as_csv(sheet), execution, **extra) == [0]
            sim.state.set_down(False)
            if down:
                messages += [(execution, item) for item in deferred_items(tmp, execution)]
            else:
                assert_as_fresh(sim, fresh, sheet, before)
        order.shuffle(messages)
        replay_all(sim, tmp, messages)
    assert_as_fresh(sim, fresh, sheets[-1], before)
