"""The operator's read-only views of a run: ``phonesync status`` and ``phonesync report``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from common.errors import InputError
from common.jakarta import jakarta_time
from common.outcomes import NEEDS_OFFICER, NOT_YET_APPLIED, RowOutcome, Status
from common.store import RunState, RunStatus, ShardState, StateStore, WorkItem
from jobs.outputs import render_table

REPORT_COLUMNS = ("row", "nik", "status", "reason", "warning", "patient_id", "waiting_since")

#: ``phonesync status`` exit codes: 0 only for a plainly succeeded run (docs: guide.md, runbook).
STATUS_EXIT = {
    RunStatus.SUCCEEDED: 0,
    RunStatus.FAILED: 1,
    RunStatus.NEEDS_ACTION: 3,
    RunStatus.PARTIAL: 4,
    RunStatus.RUNNING: 5,
}
EXIT_NO_RUN = 6
#: Rows listed by name in ``phonesync status`` (all of them are in ``phonesync report``).
LISTED_ROWS = 20
_ACTION = NEEDS_OFFICER | NOT_YET_APPLIED


def status_exit_code(run: RunState | None) -> int:
    return EXIT_NO_RUN if run is None else STATUS_EXIT[run.status]


def render_status(
    run: RunState | None,
    shards: Sequence[ShardState],
    run_date: str,
    bars: bool,
    outcomes: Sequence[RowOutcome] = (),
) -> str:
    """The run, its shards and who holds them, counts by status and, by name, the rows someone
    must act on."""
    if run is None:
        return f"no run recorded for {run_date}"
    now = time.time()
    end = run.finished_at or now
    shards = [s for s in shards if s.execution == run.execution]
    lines = [
        f"run {run.run_date}: {run.status.value}" + (f" — {run.reason}" if run.reason else ""),
        f"  execution  {run.execution}",
        f"  started    {jakarta_time(run.started_at)}"
        f" ({end - run.started_at:.0f} s {'in total' if run.finished_at else 'so far'})",
        f"  rows       {run.total_rows}"
        + ("" if run.manifest_ready else " (manifest not written yet)"),
    ]
    lines += _window(run)
    if run.manifest_expires is not None:
        lines.append(
            f"  manifest   {'expired' if run.manifest_expired(now) else 'kept until'}"
            f" {jakarta_time(run.manifest_expires)} (full NIKs and numbers; replays need it)"
        )
    if run.manifest_ready:
        lines.append(f"  shards     {sum(s.finished for s in shards)}/{run.task_count} finished")
    if run.report:
        lines.append(f"  report tab {run.report}")
    if run.manifest_ready:
        by_shard = {s.shard: s for s in shards}
        lines += [_shard_line(i, by_shard.get(i), bars, now) for i in range(run.task_count)]
    counts = run.counts if run.finished_at else sum_counts(shards)
    if counts:
        lines.append("  by status" + ("" if run.finished_at else " (so far, synced rows only)"))
        lines += [f"    {status:<16} {count}" for status, count in counts.items()]
    lines += _rows_needing_action(outcomes, run_date)
    return "\n".join(lines)


def _shard_line(index: int, shard: ShardState | None, bars: bool, now: float) -> str:
    """``shard   2  [###   ] 40/100 (40%) task 1, updated 3 s ago``: its progress and who
    holds it; a holder whose lease expired is gone, and the next task to look takes it over."""
    head = f"  shard {index:>3}  "
    if shard is None or (shard.owner is None and not shard.finished):
        return head + "not claimed yet"
    share = shard.done / shard.total if shard.total else float(shard.finished)
    bar = f"[{'#' * round(share * 30):<30}] " if bars else ""
    if shard.finished:  # no owner: finished before shards had owners (an older state file)
        holder = "done" + (f" by task {shard.owner}" if shard.owner is not None else "")
    elif shard.lease_until > now:
        holder = f"task {shard.owner}, updated {now - shard.updated_at:.0f} s ago"
    else:
        holder = (
            f"task {shard.owner} gone (lease expired {now - shard.lease_until:.0f} s ago):"
            " the next task to look takes it over"
        )
    return f"{head}{bar}{shard.done}/{shard.total} ({share:.0%}) {holder}"


def _window(run: RunState) -> list[str]:
    """The dates the run covers, the missed nights it caught up, the dates left unsynced."""
    if not run.window_first:
        return []
    first = run.window_first
    lines = [f"  window     {first}" + (f" to {run.run_date}" if first != run.run_date else "")]
    if run.caught_up:
        lines.append(
            f"  caught up  {', '.join(run.caught_up)} (no finished run had covered"
            f" {'them' if len(run.caught_up) > 1 else 'it'})"
        )
    if run.unsynced:
        lines.append(
            f"  not synced {', '.join(run.unsynced)} (no finished run covers"
            f" {'them' if len(run.unsynced) > 1 else 'it'}: rerun with RUN_DATE, see the runbook)"
        )
    return lines


def _rows_needing_action(outcomes: Sequence[RowOutcome], run_date: str) -> list[str]:
    rows = [o for o in outcomes if o.status in _ACTION]
    if not rows:
        return []
    lines = [f"  rows needing action ({len(rows)}; who acts: docs/sheet-rules.md, Outcomes)"]
    lines += [
        f"    row {o.row:>5}  {o.status.value:<14} {o.nik_masked or '-':<16}  {o.reason}"
        + (f" (waiting since {o.since})" if o.since and o.status in NEEDS_OFFICER else "")
        for o in rows[:LISTED_ROWS]
    ]
    if len(rows) > LISTED_ROWS:
        lines.append(f"    … {len(rows) - LISTED_ROWS} more: phonesync report --date {run_date}")
    return lines


def sum_counts(shards: Sequence[ShardState]) -> dict[str, int]:
    """Counts by status over the shards' progress records (a run in progress has no total yet)."""
    counts: dict[str, int] = {}
    for shard in shards:
        for status, n in shard.counts.items():
            counts[status] = counts.get(status, 0) + n
    return counts


def render_report(outcomes: Sequence[RowOutcome], fmt: str) -> bytes:
    """One line per recorded row (the window's): what a field officer needs to find and fix it
    (no full NIK)."""
    rows = [
        {
            "row": o.row,
            "nik": o.nik_masked,
            "status": o.status.value,
            "reason": o.reason,
            "warning": o.warning,
            "patient_id": o.patient_id or "",
            "waiting_since": o.since,
        }
        for o in outcomes
    ]
    return render_table(rows, REPORT_COLUMNS, fmt)


def replay_candidates(
    store: StateStore, run_date: str, status: Status, rows: Sequence[int]
) -> list[WorkItem]:
    """The manifest items of ``run_date`` whose recorded outcome is ``status`` (and in ``rows``)."""
    run = store.get_run(run_date)
    if run is None or not run.manifest_ready:
        raise InputError(f"no run with a manifest for {run_date}")
    if run.manifest_expired(store.clock()):
        from common.replay import no_manifest

        raise InputError(no_manifest(run, store.clock()))
    wanted = {o.row for o in store.outcomes(run_date) if o.status is status}
    if rows:
        missing = sorted(set(rows) - wanted)
        if missing:
            raise InputError(f"rows {missing} are not {status.value} in the {run_date} run")
        wanted &= set(rows)
    items: list[WorkItem] = []
    for index in range(run.task_count):
        items += [
            i for i in store.read_shard(run_date, run.execution, index) or [] if i.row in wanted
        ]
    return sorted(items, key=lambda i: i.row)
