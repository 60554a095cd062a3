"""Throughput of the sync against the FHIR simulator: slow, flaky and rate-limited.

    python -m bench.sync_bench [--rows 20000] [--latency-ms 150] [--error-rate 0.01]
                               [--rate-limit 200] [--transport aiohttp|httpx] [--state sqlite|firestore]

The simulator runs in its own process (as a real server would); the benchmark drives the job's
own path (plan → shard → sync_shard with the FHIR client and a state store) and prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from bench.data import patients, sheet_rows, write_bundle, write_sheet
from common.fhir import FhirClient, FhirSettings
from common.planning import plan_rows
from common.privacy import DEVELOPMENT_LEDGER_KEY
from common.sheet import read_csv
from common.store import SqliteStore, StateStore, WorkItem
from common.sync import Ledger, RowResult, ShardProgress, sync_shard


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_bench_store(kind: str, work: Path) -> StateStore:
    if kind == "firestore":
        from common.store import firestore_store

        if "FIRESTORE_EMULATOR_HOST" not in os.environ:
            sys.exit("--state firestore needs FIRESTORE_EMULATOR_HOST (start the emulator first)")
        return firestore_store("phonesync-bench")
    return SqliteStore(work / "state.sqlite3")


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
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--state", choices=["sqlite", "firestore"], default="sqlite")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="phonesync-sync-bench-"))
    write_bundle(work / "bundle.json", patients(args.rows))
    clean = [
        [*r[:3], f"08{1100000000 + i}"] for i, r in enumerate(sheet_rows(args.rows, args.rows)[1:])
    ]
    for i, row in enumerate(clean):
        row[1] = f"3171{i:012d}"  # one row per patient: every row is a real update
    write_sheet(
        work / "sheet.csv",
        [["last_updated_date", "nik_identifier", "name", "phone_number"], *clean],
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "fhir-sim",
            "--bundle",
            str(work / "bundle.json"),
            "--port",
            str(port),
            "--latency-ms",
            str(args.latency_ms),
            "--error-rate",
            str(args.error_rate),
            "--rate-limit",
            str(args.rate_limit),
            "--seed",
            "1",
            "--api-key",
            "bench",
        ],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/_sim/stats")
                break
            except OSError:
                time.sleep(0.1)
        plan = plan_rows(read_csv(work / "sheet.csv"))
        items = [
            WorkItem(c.row, c.date.isoformat(), c.nik, c.phone.e164, c.phone.assigned)
            for c in plan.candidates
        ]
        store = open_bench_store(args.state, work)
        hooks = BenchHooks(store)
        settings = FhirSettings(
            base_url=f"{base}/fhir",
            api_key="bench",
            concurrency=args.concurrency,
            rate_limit=args.client_rate or args.rate_limit,
            transport=args.transport,
        )

        async def go() -> tuple[ShardProgress, Any]:
            async with FhirClient(settings) as client:
                progress = await sync_shard(
                    items,
                    client,
                    store,
                    Ledger(DEVELOPMENT_LEDGER_KEY),
                    hooks,
                    concurrency=args.concurrency,
                )
                return progress, client.stats

        cpu_before = time.process_time()
        started = time.perf_counter()
        progress, stats = asyncio.run(go())
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        server_stats = orjson.loads(urllib.request.urlopen(f"{base}/_sim/stats").read())
    finally:
        server.terminate()
        server.wait()
    requests = sum(stats.requests.values())
    updated = progress.counts.get("updated", 0)
    refused = sum(n for k, n in server_stats["requests"].items() if k.endswith(" 429"))
    print(
        f"rows {len(items):,} | transport {args.transport} | state {args.state} | concurrency {args.concurrency}"
    )
    print(
        f"server: {args.latency_ms:.0f} ms median latency, {args.error_rate:.1%} 5xx, limit {args.rate_limit:.0f} req/s"
    )
    print(
        f"wall {wall:.1f} s | updated {updated:,} ({updated / wall:,.1f}/s) | outcomes {progress.counts}"
    )
    print(
        f"PUTs {server_stats['requests'].get('PUT 200', 0):,} | requests {requests:,} | retries {stats.retries:,} | 429s {refused:,}"
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


if __name__ == "__main__":
    main()
