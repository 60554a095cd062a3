"""Task 0 on large accumulated sheets, read through the Sheets API of the simulator.

    python -m bench.task0_bench [--rows 100000 1000000] [--nights 1 50] [--no-full-run]
                                [--waiting N]

For each sheet (``--nights 50``: a sheet that grew over 50 nights, the run's window holding the
last night's rows; ``--nights 1``: every row in the window) it prints task 0's own figures —
reading, planning and writing the manifest, in a child process: wall time, CPU time and peak
RSS — and the outcome records it left in the state store. Unless ``--no-full-run``, a sheet of
several nights is then run whole with ``phonesync run`` (one task, syncing the window's rows
against the simulator), with the whole run's peak RSS. ``--waiting N``: the store holds N
rows waiting on a field officer, spread over the 30 nights before the window (their rows since
fixed: task 0 takes each up again), as a sheet whose officers fall behind would leave it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from bench.data import accumulated_rows, patients, write_bundle, write_sheet
from bench.measure import measured
from bench.simulator import simulator
from common.store import StateStore, WaitingRow

RUN_DATE = date(2025, 9, 23)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--nights", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--no-full-run", action="store_true")
    parser.add_argument("--waiting", type=int, default=0, metavar="N")
    parser.add_argument("--task0", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.task0:
        task0()
        return
    for rows in args.rows:
        for nights in args.nights:
            with tempfile.TemporaryDirectory(prefix="phonesync-task0-bench-") as work:
                full_run = nights > 1 and not args.no_full_run
                bench(rows, nights, Path(work), full_run=full_run, waiting=args.waiting)


def bench(rows: int, nights: int, work: Path, *, full_run: bool, waiting: int = 0) -> None:
    per_night = -(-rows // nights)
    window = rows - (nights - 1) * per_night
    print(
        f"{rows:,} rows over {nights} night(s), {window:,} in the window"
        + (f", {waiting:,} rows waiting on an officer" if waiting else ""),
        flush=True,
    )
    sheet, bundle = work / "sheet.csv", work / "bundle.json"
    grown = accumulated_rows(rows, nights, RUN_DATE)
    write_sheet(sheet, grown)
    (work / "waiting.json").write_text(json.dumps(waiting_rows(grown, waiting)))
    del grown
    # The simulator holds the window's patients (for the full run); a task 0 alone needs none.
    write_bundle(bundle, patients(window if full_run else 1, first=rows - window))
    with simulator("--bundle", str(bundle), "--sheet", str(sheet), wait_seconds=120) as url:
        env = {
            **os.environ,
            "SHEET_ID": "bench",
            "SHEET_RANGE": "Sheet1!A:D",
            "SHEETS_API_URL": url,
            "SHEETS_ACCESS_TOKEN": "bench",
            "FHIR_BASE_URL": f"{url}/fhir",
            "RUN_DATE": RUN_DATE.isoformat(),
            "LOOKBACK_DAYS": "0",
            "CLOUD_RUN_EXECUTION": "bench-task0",
            "STATE_PATH": str(work / "task0.sqlite3"),
            "BENCH_WAITING": str(work / "waiting.json"),
        }
        run = measured([sys.executable, "-m", "bench.task0_bench", "--task0"], env)
        phases = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"  task 0: wall {run.wall:.1f} s (read + plan {phases['read_plan_seconds']:.1f} s, "
            f"manifest + outcomes {phases['manifest_seconds']:.1f} s), cpu {run.cpu:.1f} s, "
            f"peak RSS {run.peak_mib:,.0f} MiB | {records(work / 'task0.sqlite3')} | "
            f"{phases['candidates']:,} rows to sync, {phases['waiting_taken_up']:,} of them"
            " taken up again",
            flush=True,
        )
        if full_run:
            env["STATE_PATH"] = str(work / "run.sqlite3")
            env["CLOUD_RUN_EXECUTION"] = "bench-run"
            run = measured([sys.executable, "-m", "jobs.cli", "run"], env)
            print(
                f"  phonesync run: wall {run.wall:.1f} s, cpu {run.cpu:.1f} s, "
                f"peak RSS {run.peak_mib:,.0f} MiB | "
                f"{records(work / 'run.sqlite3')}",
                flush=True,
            )


def waiting_rows(sheet: list[list[str]], count: int) -> list[tuple[str, int, str]]:
    """``count`` rows (ISO date, row number, NIK) of the 30 nights before the run, evenly spread."""
    first, last = RUN_DATE - timedelta(days=30), RUN_DATE - timedelta(days=1)
    dated = [
        (day.isoformat(), n, cells[1])
        for n, cells in enumerate(sheet[1:], start=2)
        if first <= (day := datetime.strptime(cells[0], "%d-%m-%Y").date()) <= last
    ]
    step = max(1, len(dated) // count) if count else 1
    return dated[::step][:count]


def seed_waiting(store: StateStore, path: Path) -> None:
    """The store's rows waiting on an officer, as earlier nights would have left them."""
    from common.privacy import DEVELOPMENT_LEDGER_KEY, keyed_hash, mask_nik

    rows = json.loads(path.read_text())
    store.update_waiting(
        put=[
            WaitingRow(
                sheet_date=day,
                row=row,
                nik_key=keyed_hash(nik, DEVELOPMENT_LEDGER_KEY),
                nik_masked=mask_nik(nik),
                status="invalid_phone",
                since=day,
                run_date=day,
                execution=f"bench-{day}",
                read_at="2025-01-01T00:00:00.000000+00:00",
            )
            for day, row, nik in rows
        ]
    )


def records(state: Path) -> str:
    """The per-row records the run left: outcomes, and the run's counts."""
    with sqlite3.connect(state) as db:
        (outcomes,) = db.execute("SELECT COUNT(*) FROM outcomes").fetchone()
        (counts,) = db.execute("SELECT counts FROM runs").fetchone()
    return f"outcome records {outcomes:,}, run counts {counts}"


class _ManifestTimes(logging.Handler):
    """Keeps the phase timings of task 0's ``manifest_written`` log event."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "json_fields", {})
        if fields.get("event") == "manifest_written":
            self.times = {
                k: v
                for k, v in fields.items()
                if k.endswith("_seconds") or k in ("candidates", "waiting_taken_up")
            }


def task0() -> None:
    """Task 0's part of a run (lock, read, plan, manifest); prints its phases as JSON."""
    from common.config import load_settings
    from common.runtime import open_store
    from common.telemetry import LOGGER_NAME
    from jobs.night_plan import plan_night

    times = _ManifestTimes()
    logging.getLogger(LOGGER_NAME).addHandler(times)
    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)
    config = load_settings()
    store = open_store(config)
    seed_waiting(store, Path(os.environ["BENCH_WAITING"]))
    run_date = RUN_DATE.isoformat()
    store.acquire_run(run_date, config.execution, 1, 600.0, time.time())
    plan_night(config, store, run_date)
    store.close()
    print(json.dumps(times.times))


if __name__ == "__main__":
    main()
