"""Task 0's plan of the night: which dates it covers, the sheet read once and planned, the rows
waiting on a field officer taken up again, the rows decided from the sheet recorded, and the
manifest (one shard of work items per task) that the other tasks wait for."""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta

from common.config import Settings
from common.night_window import night_window
from common.outcomes import SHEET_REJECTED, Status, summarize
from common.planning import DateWindow, Plan, Recheck, plan_rows, shard_of
from common.quiet_days import rows_expected
from common.recording import Place, RowRecorder, RowResult
from common.runtime import ledger_key
from common.sheet_access import read_rows
from common.store import StateStore, WorkItem, read_stamp
from common.sync import Ledger
from common.telemetry import log_event
from common.waiting import take_up, waiting_in_reach

#: Rows decided from the sheet are recorded this many at a time: the results, their places
#: and the rows waiting on an officer of one batch are in memory at once, not a whole night's.
_DECIDED_BATCH = 5_000


def plan_night(config: Settings, store: StateStore, run_date: str) -> None:
    """Task 0's plan of the night, written down: its window (its date, the lookback and the dates no finished
    run covered), the rows waiting on a field officer taken up again, the rows decided from the
    sheet recorded, then the manifest (docs/decisions.md, records 99-102)."""
    day = date.fromisoformat(run_date)
    horizon = day - timedelta(days=config.action_days)
    night = night_window(
        day,
        store.runs_since(horizon.isoformat()),
        lookback_days=config.lookback_days,
        catch_up_days=config.catch_up_days,
        action_days=config.action_days,
    )
    caught_up = [d.isoformat() for d in night.caught_up]
    unsynced = [d.isoformat() for d in night.unsynced]
    store.set_window(run_date, config.execution, night.first.isoformat(), caught_up, unsynced)
    window = DateWindow(night.first, day)
    nik_key = Ledger(ledger_key(config)).nik_key
    read_at = read_stamp()  # taken before the read: a later read sees at least this sheet
    waiting = waiting_in_reach(store, run_date, read_at, horizon)
    started = time.perf_counter()
    plan = plan_rows(read_rows(config), window, Recheck(waiting, nik_key, horizon))
    planned = time.perf_counter()
    shards: dict[int, list[WorkItem]] = {i: [] for i in range(config.task_count)}
    for c in plan.candidates:
        item = WorkItem(
            row=c.row,
            date=c.date.isoformat(),
            nik=c.nik,
            phone=c.phone.e164,
            assigned=c.phone.assigned,
            read_at=read_at,
            since=plan.since(c.row),
        )
        shards[shard_of(c.nik, config.task_count)].append(item)
    # This read re-decides every row of its window: replays of older reads' rows become stale.
    # Noted before the manifest, so no run of this read can exist without it (a crash in
    # between only makes older reads' replays stale a little early: this run redoes them).
    store.note_read(read_at, [d.isoformat() for d in night.dates()])
    take_up(store, run_date, config.execution, waiting, plan)
    # The rows decided from the sheet end as every row does (recorded, logged), before the
    # manifest is marked ready. Rows dated outside the window are counted, not recorded one by
    # one (docs/decisions.md).
    recorder = RowRecorder(store, run_date, config.execution, nik_key=nik_key)
    for start in range(0, len(plan.decided), _DECIDED_BATCH):  # a batch's records at a time
        batch = plan.decided[start : start + _DECIDED_BATCH]
        recorder.record([RowResult(o, place=_place(plan, o.row, read_at)) for o in batch])
    outside = {Status.OTHER_DATE.value: len(plan.other_rows)} if plan.other_rows else {}
    store.write_manifest(run_date, config.execution, shards, len(plan.decided), outside)
    written = time.perf_counter()
    rejected = [o for o in plan.decided if o.status in SHEET_REJECTED]
    log_event(
        "manifest_written",
        f"{len(plan.candidates)} rows to sync, {len(plan.decided)} decided from the sheet"
        f" ({len(rejected)} rejected by the sheet rules), {len(plan.other_rows)} outside"
        " the window"
        + (f"; caught up {', '.join(caught_up)}" if caught_up else "")
        + (f"; not synced: {', '.join(unsynced)}" if unsynced else ""),
        severity=logging.WARNING if unsynced else logging.INFO,
        candidates=len(plan.candidates),
        decided=len(plan.decided),
        outside_window=len(plan.other_rows),
        rejected=summarize(rejected),
        shard_sizes=[len(s) for s in shards.values()],
        window=[night.first.isoformat(), run_date],
        rows_expected=rows_expected(night.first, day, config.quiet_weekdays),
        caught_up=caught_up,
        unsynced=unsynced,
        waiting_taken_up=len(plan.taken_up),
        read_plan_seconds=round(planned - started, 3),
        manifest_seconds=round(written - planned, 3),
    )


def _place(plan: Plan, row: int, read_at: str) -> Place | None:
    where = plan.places.get(row)
    return Place(where[0], where[1], read_at) if where is not None else None
