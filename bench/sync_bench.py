"""Throughput of the sync against the FHIR simulator: slow, flaky and rate-limited.

    python -m bench.sync_bench [--rows 20000] [--latency-ms 150] [--error-rate 0.01]
                               [--rate-limit 200] [--transport aiohttp|httpx] [--state sqlite|firestore]
                               [--batch-size N ...] [--entry-cost-ms 0] [--rate-limit-entries]

The simulator runs in its own process (as a real server would); the benchmark drives the job's
own path (plan → shard → sync_shard with the FHIR client, the batching registry and a state
store) and prints figures. Each ``--batch-size`` (``0`` = one request per search or update) runs
against a fresh simulator and state, per-row mode (``0``) always first as the baseline; a table
then puts the modes side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import patients, sheet_rows, write_bundle, write_sheet
from bench.simulator import simulator
from bench.simulator import stats as simulator_stats
from common.fhir import BatchingRegistry, FhirClient, FhirSettings
from common.planning import plan_rows
from common.privacy import DEVELOPMENT_LEDGER_KEY
from common.recording import RowResult
from common.sheet import read_csv
from common.store import SqliteStore, StateStore, WorkItem
from common.sync import Ledger, ShardProgress, sync_shard


class BenchHooks:
    """Records outcomes and the ledger like the job does, and counts ledger writes."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.ledger_writes = 0
        self.ledger_seconds = 0.0

    async def flush(self, results: Any, progress: ShardProgress) -> None:
        rows: list[RowResult] = list(results)
        started = time.perf_counter()
        await asyncio.to_thread(self.store.record_outcomes, "2025-09-23", [r.outcome for r in rows])
        entries = [r.ledger for r in rows if r.ledger]
        await asyncio.to_thread(self.store.ledger_put, entries)
        self.ledger_seconds += time.perf_counter() - started
        self.ledger_writes += len(entries) + len(rows)


def open_bench_store(kind: str, work: Path, name: str) -> StateStore:
    if kind == "firestore":
        from common.store import firestore_store

        if "FIRESTORE_EMULATOR_HOST" not in os.environ:
            sys.exit("--state firestore needs FIRESTORE_EMULATOR_HOST (start the emulator first)")
        return firestore_store(f"phonesync-bench-{name}")
    return SqliteStore(work / f"state-{name}.sqlite3")


@dataclass(frozen=True, slots=True)
class Figures:
    """One mode's run: what a table row shows."""

    batch_size: int
    rows: int
    wall: float
    requests: int
    refused: int
    limit: float

    @property
    def of_limit(self) -> float:
        return self.requests / self.wall / self.limit if self.limit else 0.0


def _write_inputs(work: Path, rows: int) -> None:
    write_bundle(work / "bundle.json", patients(rows))
    clean = [[*r[:3], f"08{1100000000 + i}"] for i, r in enumerate(sheet_rows(rows, rows)[1:])]
    for i, row in enumerate(clean):
        row[1] = f"3171{i:012d}"  # one row per patient: every row is a real update
    write_sheet(
        work / "sheet.csv",
        [["last_updated_date", "nik_identifier", "name", "phone_number"], *clean],
    )


def _simulator_options(work: Path, args: argparse.Namespace) -> list[str]:
    options = [
        *("--bundle", str(work / "bundle.json")),
        *("--latency-ms", str(args.latency_ms), "--error-rate", str(args.error_rate)),
        *("--rate-limit", str(args.rate_limit), "--entry-cost-ms", str(args.entry_cost_ms)),
        *("--seed", "1", "--api-key", "bench"),
    ]
    return [*options, "--rate-limit-entries"] if args.rate_limit_entries else options


def run_mode(work: Path, args: argparse.Namespace, batch_size: int) -> Figures:
    """Sync every row once in one mode against a fresh simulator and state; print its figures."""
    with simulator(*_simulator_options(work, args), wait_seconds=20) as base:
        plan = plan_rows(read_csv(work / "sheet.csv"))
        items = [
            WorkItem(c.row, c.date.isoformat(), c.nik, c.phone.e164, c.phone.assigned)
            for c in plan.candidates
        ]
        store = open_bench_store(args.state, work, f"batch{batch_size}")
        hooks = BenchHooks(store)
        settings = FhirSettings(
            base_url=f"{base}/fhir",
            api_key="bench",
            concurrency=args.concurrency,
            rate_limit=args.client_rate or args.rate_limit,
            transport=args.transport,
            write="update",  # measured: PUT (auto would first ask the CapabilityStatement)
        )

        async def go() -> tuple[ShardProgress, Any]:
            async with FhirClient(settings) as client:
                registry = BatchingRegistry(client, batch_size)
                progress = await sync_shard(
                    items,
                    registry,
                    store,
                    Ledger(DEVELOPMENT_LEDGER_KEY),
                    hooks,
                    concurrency=registry.rows_in_flight(args.concurrency),
                )
                return progress, client.stats

        cpu_before = time.process_time()
        started = time.perf_counter()
        progress, stats = asyncio.run(go())
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        server_stats = simulator_stats(base)
    requests = sum(stats.requests.values())
    entries = sum(server_stats.get("entries", {}).values())
    updated = progress.counts.get("updated", 0)
    refused = sum(n for k, n in server_stats["requests"].items() if k.endswith(" 429"))
    puts = server_stats["requests"].get("PUT 200", 0) + server_stats.get("entries", {}).get(
        "PUT 200", 0
    )
    mode = f"batch Bundles of up to {batch_size}" if batch_size else "one request per call"
    print(f"\n== FHIR_BATCH_SIZE={batch_size}: {mode}")
    print(
        f"rows {len(items):,} | transport {args.transport} | state {args.state} | concurrency {args.concurrency}"
    )
    print(
        f"server: {args.latency_ms:.0f} ms median latency (+{args.entry_cost_ms:g} ms per batch entry), "
        f"{args.error_rate:.1%} 5xx, limit {args.rate_limit:.0f} req/s"
        + (" counting batch entries" if args.rate_limit_entries else "")
    )
    print(
        f"wall {wall:.1f} s | updated {updated:,} ({updated / wall:,.1f}/s) | outcomes {progress.counts}"
    )
    print(
        f"PUTs {puts:,} | requests {requests:,} ({requests / max(len(items), 1):.3f} per row)"
        f" | batch entries {entries:,} | retries {stats.retries:,} | 429s {refused:,}"
    )
    print(
        f"latency p50 {stats.percentile(50):.0f} ms, p95 {stats.percentile(95):.0f} ms | client CPU {cpu / max(requests, 1) * 1000:.2f} ms/request"
    )
    print(
        f"achieved {requests / wall:,.1f} req/s"
        + (
            f" = {requests / wall / args.rate_limit:.2f} of the rate limit"
            if args.rate_limit
            else " (no limit)"
        )
    )
    print(
        f"ledger+outcome writes {hooks.ledger_writes:,} in {hooks.ledger_seconds:.2f} s "
        f"({hooks.ledger_writes / max(hooks.ledger_seconds, 1e-9):,.0f}/s)"
    )
    twice = [p for p, n in server_stats["puts_by_patient"].items() if n > 1]
    print(f"patients PUT more than once: {len(twice)}")
    return Figures(batch_size, len(items), wall, requests, refused, args.rate_limit)


def print_comparison(runs: list[Figures]) -> None:
    """The modes side by side, each against the first: per-row mode."""
    first = runs[0]
    print(
        f"\n{'FHIR_BATCH_SIZE':>15} | {'wall s':>7} | {'requests':>9} | {'per row':>7} | "
        f"{'of limit':>8} | {'429s':>5} | vs first: requests, wall"
    )
    for run in runs:
        print(
            f"{run.batch_size:>15} | {run.wall:>7.1f} | {run.requests:>9,} | "
            f"{run.requests / max(run.rows, 1):>7.3f} | {run.of_limit:>8.2f} | {run.refused:>5,} | "
            f"1/{first.requests / max(run.requests, 1):.1f}, {run.wall / first.wall:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--error-rate", type=float, default=0.01)
    parser.add_argument(
        "--rate-limit", type=float, default=200.0, help="the server's limit, requests/s"
    )
    parser.add_argument(
        "--client-rate", type=float, help="the client's pacing (default: the server's limit)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--state", choices=["sqlite", "firestore"], default="sqlite")
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=[0],
        help="FHIR_BATCH_SIZE of each run besides per-row mode (0), which always runs first",
    )
    parser.add_argument(
        "--entry-cost-ms", type=float, default=0.0, help="the server's extra time per batch entry"
    )
    parser.add_argument(
        "--rate-limit-entries",
        action="store_true",
        help="the server's limit counts batch entries (a FHIR-aware gateway), not requests",
    )
    args = parser.parse_args()
    if any(size < 0 for size in args.batch_size):
        parser.error("--batch-size: 0 or more")

    work = Path(tempfile.mkdtemp(prefix="phonesync-sync-bench-"))
    try:
        _write_inputs(work, args.rows)
        sizes = [0, *(size for size in dict.fromkeys(args.batch_size) if size)]
        runs = [run_mode(work, args, size) for size in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(runs) > 1:
        print_comparison(runs)


if __name__ == "__main__":
    main()
