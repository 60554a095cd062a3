"""How cheaply `phonesync reconcile` reads the registry: requests and wall time per NIK.

    python -m bench.reconcile_bench [--niks 100000] [--latency-ms 150] [--rate-limit 200]
                                    [--error-rate 0] [--batch-size auto ...]

A registry of ``--niks`` patients and a sheet of one row per patient, with drift planted (1 %
another number, 0.5 % no mobile entry, 0.5 % the number spelt +62…, 0.1 % NIKs the registry
lacks). The simulator runs in its own process (150 ms median latency, 200 requests/s); the
reconcile is the real command in a child process (read-only, one task, SQLite state), for each
``--batch-size`` (``FHIR_BATCH_SIZE``: ``auto`` takes the server's ``batch``, 50 a Bundle; ``0``
one search per NIK). It prints the figures docs/performance.md quotes and the goals: at most 1/40 of a
request per NIK and 60 s for 100,000 NIKs in batch mode.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import nik, patients, write_bundle, write_sheet
from bench.simulator import simulator
from bench.simulator import stats as simulator_stats

DAY = "2025-09-21"
GOAL_REQUESTS_PER_NIK = 1 / 40
GOAL_SECONDS = 60.0
#: Planted drift: (share of NIKs, what the registry holds instead of the sheet's number).
PLANTED = (("different", 0.01), ("missing", 0.005), ("format_only", 0.005), ("not_found", 0.001))


def _inputs(work: Path, count: int, seed: int = 5) -> dict[str, int]:
    """The bundle and the sheet; how many NIKs of each planted class."""
    rng = random.Random(seed)
    planted = {name: 0 for name, _ in PLANTED}
    numbers = [f"08{rng.randrange(10**9, 10**10)}" for _ in range(count)]
    kinds: list[str] = []
    for _ in range(count):
        draw, kind = rng.random(), "in_sync"
        for name, share in PLANTED:
            if draw < share:
                kind = name
                break
            draw -= share
        kinds.append(kind)
        if kind != "in_sync":
            planted[kind] += 1

    def registry() -> Any:
        for i, patient in enumerate(patients(count)):
            kind = kinds[i]
            if kind == "not_found":
                continue
            held = {
                "in_sync": numbers[i],
                "different": f"08{rng.randrange(10**9, 10**10)}",
                "format_only": "+62" + numbers[i][1:],
            }.get(kind)
            telecom = [t for t in patient.get("telecom") or () if t.get("use") != "mobile"]
            if held is not None:
                telecom.append({"system": "phone", "use": "mobile", "value": held})
            patient["telecom"] = telecom
            yield patient

    write_bundle(work / "bundle.json", registry())
    day = "-".join(reversed(DAY.split("-")))
    write_sheet(
        work / "sheet.csv",
        [["last_updated_date", "nik_identifier", "name", "phone_number"]]
        + [[day, nik(i), f"PATIENT {i}", numbers[i]] for i in range(count)],
    )
    return planted


@dataclass(frozen=True, slots=True)
class Figures:
    batch_size: str
    niks: int
    wall: float
    cpu: float
    requests: int
    entries: int
    counts: dict[str, int]

    @property
    def per_nik(self) -> float:
        return self.requests / max(self.niks, 1)


def run_mode(work: Path, args: argparse.Namespace, batch_size: str) -> Figures:
    options = [
        *("--bundle", str(work / "bundle.json")),
        *("--latency-ms", str(args.latency_ms), "--error-rate", str(args.error_rate)),
        *("--rate-limit", str(args.rate_limit), "--seed", "1", "--api-key", "bench"),
    ]
    with simulator(*options, wait_seconds=60) as base:
        env = {
            **os.environ,
            "FHIR_API_KEY": "bench",
            "FHIR_BATCH_SIZE": batch_size,
            "FHIR_RATE_LIMIT": str(args.rate_limit),
            "STATE_PATH": str(work / f"state-{batch_size}" / "s.sqlite3"),
        }
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobs.cli",
                "reconcile",
                "--since",
                DAY,
                "--until",
                DAY,
                "--sheet",
                str(work / "sheet.csv"),
                "--fhir-url",
                f"{base}/fhir",
                "--format",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=work,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 3):
            raise SystemExit(f"reconcile failed ({done.returncode}): {done.stderr.strip()}")
        stats = simulator_stats(base)
    counts = json.loads(done.stdout)["counts"]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    requests = sum(stats["requests"].values())  # every HTTP request, GET metadata included
    return Figures(
        batch_size,
        sum(counts.values()),
        wall,
        cpu,
        requests,
        sum(stats["entries"].values()),
        counts,
    )


def report(run: Figures, args: argparse.Namespace) -> None:
    mode = "one search per NIK" if run.batch_size == "0" else f"FHIR_BATCH_SIZE={run.batch_size}"
    print(f"\n== {mode}")
    print(
        f"NIKs {run.niks:,} | server {args.latency_ms:.0f} ms median latency,"
        f" {args.error_rate:.1%} 5xx, limit {args.rate_limit:.0f} req/s"
    )
    print(
        f"wall {run.wall:.1f} s ({run.niks / run.wall:,.0f} NIKs/s) | requests {run.requests:,}"
        f" (1/{1 / max(run.per_nik, 1e-9):.1f} per NIK) | batch entries {run.entries:,}"
        f" | achieved {run.requests / run.wall:.1f} req/s | client CPU {run.cpu:.1f} s"
    )
    print("classes " + ", ".join(f"{k} {v:,}" for k, v in run.counts.items() if v))
    if run.batch_size != "0":
        print(
            f"goals: at most 1/40 request per NIK: {'met' if run.per_nik <= GOAL_REQUESTS_PER_NIK else 'MISSED'}"
            f" | at most {GOAL_SECONDS:.0f} s per 100,000 NIKs:"
            f" {'met' if run.wall * 100_000 / max(run.niks, 1) <= GOAL_SECONDS else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--niks", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--rate-limit", type=float, default=200.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--batch-size", nargs="+", default=["auto"], help="auto, 0 or N each")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="phonesync-reconcile-bench-"))
    try:
        planted = _inputs(work, args.niks)
        print(f"planted: {', '.join(f'{k} {v:,}' for k, v in planted.items())}")
        for size in args.batch_size:
            report(run_mode(work, args, size), args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
