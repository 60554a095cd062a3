"""Benchmark ``phonesync transform`` on a large generated sheet and bundle.

    python -m bench.transform_bench [--patients 100000] [--rows 100000] [--repeat 3]

Runs the real CLI in a child process and prints wall time, rows/s and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.data import patients, sheet_rows, write_bundle, write_sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep generated files here")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
    else:  # ~850 MB of generated files: not left behind in /tmp
        with tempfile.TemporaryDirectory(prefix="phonesync-bench-") as work:
            run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> None:
    sheet, bundle, out = work / "sheet.csv", work / "bundle.json", work / "out.json"
    if not bundle.exists():
        print(
            f"generating {args.patients:,} patients and {args.rows:,} rows in {work} …", flush=True
        )
        write_bundle(bundle, patients(args.patients))
        write_sheet(sheet, sheet_rows(args.rows, args.patients))
    print(
        f"bundle {bundle.stat().st_size / 1e6:,.0f} MB, sheet {sheet.stat().st_size / 1e6:,.1f} MB"
    )
    command = [
        sys.executable,
        "-m",
        "jobs.cli",
        "transform",
        "--sheet",
        str(sheet),
        "--bundle",
        str(bundle),
        "--out",
        str(out),
        "--report",
        str(work / "report.json"),
        "--now",
        "2025-09-23T23:45:00.123456+07:00",
    ]
    for attempt in range(1, args.repeat + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        note = "" if peak_mb > before / 1024 else " (peak of an earlier run)"
        print(
            f"run {attempt}: wall {wall:.2f} s, {args.rows / wall:,.0f} rows/s, "
            f"peak RSS {peak_mb:,.0f} MB{note} | {done.stderr.strip()}"
        )


if __name__ == "__main__":
    main()
