"""Benchmark ``phonesync transform`` on large generated sheets and bundles.

    python -m bench.transform_bench [--patients 100000 300000 1000000] [--repeat 3]

For each size (as many sheet rows as patients unless ``--rows``), runs the real CLI in a child
process and prints wall time, CPU time, rows/s and the child's peak RSS (the whole command,
its forked indexer included). A million patients is a 2.65 GB bundle and its 2.65 GB output;
each size's files are removed before the next is generated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.data import patients, sheet_rows, write_bundle, write_sheet
from bench.measure import measured

NOW = "2025-09-23T23:45:00.123456+07:00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--rows", type=int, help="sheet rows (default: as many as patients)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep generated files here (one size only)")
    args = parser.parse_args()
    if args.workdir:
        if len(args.patients) != 1:
            parser.error("--workdir keeps the files of one size: give one --patients")
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.patients[0], args.rows or args.patients[0], args.repeat, args.workdir)
        return
    for count in args.patients:  # generated files are not left behind in /tmp
        with tempfile.TemporaryDirectory(prefix="phonesync-bench-") as work:
            run(count, args.rows or count, args.repeat, Path(work))


def run(count: int, rows: int, repeat: int, work: Path) -> None:
    sheet, bundle, out = work / "sheet.csv", work / "bundle.json", work / "out.json"
    if not bundle.exists():
        print(f"generating {count:,} patients and {rows:,} rows in {work} …", flush=True)
        write_bundle(bundle, patients(count))
        write_sheet(sheet, sheet_rows(rows, count))
    print(
        f"{count:,} patients: bundle {bundle.stat().st_size / 1e6:,.0f} MB, "
        f"sheet {sheet.stat().st_size / 1e6:,.1f} MB",
        flush=True,
    )
    command = [
        *(sys.executable, "-m", "jobs.cli", "transform", "--now", NOW),
        *("--sheet", str(sheet), "--bundle", str(bundle)),
        *("--out", str(out), "--report", str(work / "report.json")),
    ]
    for attempt in range(1, repeat + 1):
        run = measured(command)
        print(
            f"  run {attempt}: wall {run.wall:.2f} s, cpu {run.cpu:.2f} s, "
            f"{rows / run.wall:,.0f} rows/s, peak RSS {run.peak_mib:,.0f} MiB | {run.stderr.strip()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
