"""What ``phonesync reconcile`` prints and ``phonesync drift`` lists: counts by class, drift
rows with masked NIKs only."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from common.drift import DriftClass, DriftRow, ReconcileRun, drift_total
from common.jakarta import jakarta_time
from common.reconcile import ShardResult
from jobs.outputs import render_table
from jobs.wording import count

DRIFT_COLUMNS = ("row", "nik", "class", "sheet_date", "patient_id", "reason", "repair")


def render_counts(result: ShardResult, log: str) -> str:
    """The counts by class, for a person: what was found, what was repaired, what is left."""
    run = result.completed or result.reconcile
    counts = run.counts if result.completed else result.counts
    total = sum(counts.values())
    lines = [
        f"reconcile {run.reconcile_id}: {count(total, 'NIK')} whose newest sheet row is dated"
        f" {run.since}..{run.until}"
    ]
    lines += [f"  {name:<16} {n:,}" for name, n in counts.items()]
    drifted = drift_total(counts)
    repaired = sum(1 for f in result.findings if f.repaired)
    failed = sum(1 for f in result.findings if f.repair_failed)
    if result.reconcile.repair:
        lines.append(f"repaired {repaired:,}" + (f", {failed:,} repairs failed" if failed else ""))
    if drifted or counts.get(DriftClass.UNCHECKED.value):
        lines.append(
            f"{count(drifted, 'NIK')} drifted, {result.drift_left:,} left: `phonesync drift"
            f" --reconcile {run.reconcile_id}` lists them (docs/runbook.md: Reconcile)"
        )
    else:
        lines.append("in sync: the registry holds every number of the window")
    lines.append(f"logs: {log}")
    return "\n".join(lines)


def render_json(result: ShardResult) -> bytes:
    """``{"counts": {class: n, …}, "rows": [{"nik", "class", "sheet_date", "row",
    "patient_id", …}, …]}``: every NIK that is not in_sync, masked."""
    rows = [
        f.as_row().as_report_row()
        for f in sorted(result.findings, key=lambda f: f.candidate.row)
        if f.drift is not DriftClass.IN_SYNC
    ]
    return orjson.dumps({"counts": result.counts, "rows": rows}, option=orjson.OPT_INDENT_2) + b"\n"


def describe(run: ReconcileRun, rows: int) -> str:
    """One line about a recorded reconcile, for ``phonesync drift``'s standard error."""
    state = (
        f"finished {jakarta_time(run.finished_at)}"
        if run.finished_at is not None
        else f"{run.tasks_finished}/{run.task_count} tasks recorded so far"
    )
    return (
        f"reconcile {run.reconcile_id} of {run.since}..{run.until}"
        f" ({'with repairs' if run.repair else 'read-only'}, {state}): {count(rows, 'drift row')}"
    )


def render_drift(rows: Sequence[DriftRow], fmt: str) -> bytes:
    """One line per drift row: what an operator needs to look at the patient (no full NIK)."""
    records = [{k: ("" if v is None else v) for k, v in r.as_report_row().items()} for r in rows]
    return render_table(records, DRIFT_COLUMNS, fmt)
