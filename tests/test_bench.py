"""The benchmarks still run: docs/performance.md's figures come from them, so a broken one would rot them.

Tiny sizes only; the figures themselves are measured by hand (docs/performance.md).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

# Slow (~5 s): the benchmark's own run. Not in scripts/test-fast.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sync_bench_puts_per_row_and_batch_mode_side_by_side() -> None:
    out = bench(
        "bench.sync_bench",
        "--rows",
        "300",
        "--latency-ms",
        "0",
        "--error-rate",
        "0",
        "--batch-size",
        "30",  # and per-row mode, the baseline every run of the bench has
    )
    table = {
        int(m[1]): (int(m[2].replace(",", "")), float(m[3]))
        for m in re.finditer(r"^\s+(\d+) \|\s+[\d.]+ \|\s+([\d,]+) \|\s+([\d.]+) \|", out, re.M)
    }
    assert table.keys() == {0, 30}, out
    per_row, batch = table[0], table[30]
    assert per_row == (600, 2.0), out  # a search and a PUT per changed row
    # 300 searches and 300 updates in Bundles of up to 30: 20 when every Bundle is full; a
    # Bundle sent part-full after its linger may add a few on a loaded machine.
    assert 20 <= batch[0] <= 30, out
    assert out.count("updated 300 ") == 2
    assert out.count("patients PUT more than once: 0") == 2


def test_reconcile_bench_reads_in_batches_and_finds_what_it_planted() -> None:
    out = bench("bench.reconcile_bench", "--niks", "2000", "--latency-ms", "0")
    planted = dict(
        (name, int(n.replace(",", "")))
        for name, n in re.findall(r"(\w+) ([\d,]+)", out.splitlines()[0].split(":", 1)[1])
    )
    classes = re.search(r"^classes (.*)$", out, re.M)
    assert classes is not None, out
    found = {name: int(n.replace(",", "")) for name, n in re.findall(r"(\w+) ([\d,]+)", classes[1])}
    assert {k: v for k, v in found.items() if k != "in_sync"} == planted, out
    requests = re.search(r"requests ([\d,]+) \(1/([\d.]+) per NIK\)", out)
    assert requests is not None, out
    # 2,000 searches in Bundles of 50, and the one GET metadata: within the goal of 1/40
    assert 41 <= int(requests[1].replace(",", "")) <= 2000 / 40, out
    assert "at most 1/40 request per NIK: met" in out


def test_task0_bench_takes_up_rows_waiting_on_an_officer() -> None:
    """A sheet of 5 nights, 20 rows of the earlier nights waiting: task 0 takes each up again
    (their rows are valid now: each one is a candidate) and records only the window's rows."""
    out = bench(
        "bench.task0_bench",
        "--rows",
        "2000",
        "--nights",
        "5",
        "--no-full-run",
        "--waiting",
        "20",
    )
    assert "2,000 rows over 5 night(s), 400 in the window, 20 rows waiting on an officer" in out
    assert re.search(r"task 0: wall [\d.]+ s .* peak RSS [\d,]+ MiB \| outcome records \d+", out)
    found = re.search(r"([\d,]+) rows to sync, ([\d,]+) of them taken up again", out)
    assert found and int(found[2]) >= 20, out  # a waiting row's date's rows of its NIK too
