"""A rate-limited FHIR server (429 + Retry-After): the adaptive window, the client, the job.

A 429 slows the whole client down (AIMD on the requests in flight, a shared pause) and costs a
row none of its attempts; rows are deferred only when the server has answered nothing but 429
past the deadline. The job-level cases run against the simulator's token bucket.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bench.data import patients
from common.config import load_settings
from common.fhir import FhirClient, FhirUnavailable
from common.fhir._concurrency import AdaptiveConcurrency
from common.store import RunStatus, SqliteStore
from common.telemetry import LOGGER_NAME
from jobs.task import run_task
from tests.simulator import API_KEY, RunningSim, simulator
from tests.test_fhir_client import FakeFhir, served, settings

# Slow (~30 s): rate limits in real time (5 requests/s). Not in scripts/test-fast.
pytestmark = pytest.mark.slow

__all__ = ["served"]  # the module-scoped FakeFhir server fixture

DATE = "2025-09-23"


# --- the window ------------------------------------------------------------------------------


def test_a_429_halves_the_target_and_slow_start_climbs_back() -> None:
    window = AdaptiveConcurrency(16)
    assert (window.limit, window.target) == (16, 16)
    assert window.throttled(0)
    assert (window.limit, window.target) == (1, 8)
    assert not window.throttled(0)  # another answer of the same window: no second halving
    for expected in (2, 3, 4, 5, 6, 7, 8):  # slow start: one more per success
        window.succeeded()
        assert window.limit == expected
    for _ in range(4):  # then one more per window's worth of successes (1/8 each)
        window.succeeded()
    assert window.limit == 8
    for _ in range(5):
        window.succeeded()
    assert window.limit == 9
    assert window.throttled(1)  # a request of the new window
    assert (window.limit, window.target) == (1, 4)
    for _ in range(1000):
        window.succeeded()
    assert window.limit == 16  # never past the maximum


def test_waiters_go_in_order_a_resent_request_first_and_no_slot_leaks() -> None:
    async def scenario() -> None:
        window = AdaptiveConcurrency(2)
        await window.acquire()
        await window.acquire()
        window.throttled(0)  # the window is now one request
        order: list[str] = []

        async def wait(name: str, *, first: bool = False) -> None:
            await window.acquire(first=first)
            order.append(name)

        new = [asyncio.create_task(wait(f"new{i}")) for i in range(3)]
        resent = asyncio.create_task(wait("resent", first=True))
        cancelled = asyncio.create_task(wait("cancelled"))
        await asyncio.sleep(0)
        cancelled.cancel()
        window.release()
        window.release()  # two slots free, but the window holds one request
        await asyncio.sleep(0)
        assert order == ["resent"] and window.in_flight == 1
        for _ in range(3):
            window.release()
            await asyncio.sleep(0)
        assert order == ["resent", "new0", "new1", "new2"]
        await asyncio.gather(*new, resent)
        window.release()
        assert window.in_flight == 0

    asyncio.run(scenario())


# --- the client ------------------------------------------------------------------------------


def test_429s_use_up_no_attempts_and_senders_resume_one_by_one(
    served: tuple[FakeFhir, str],
) -> None:
    fake, base = served
    fake.reset()
    fake.fail_next(8, 429, headers={"Retry-After": "0.3"})
    fake.delay_next(8, 0.05)
    throttles: list[tuple[int, float]] = []

    async def scenario() -> None:
        options = settings(base, transport="httpx", concurrency=8, max_attempts=1)
        async with FhirClient(options, on_throttle=lambda *a: throttles.append(a)) as client:
            results = await asyncio.gather(*(client.read("p1") for _ in range(8)))
            assert [r["id"] for r in results] == ["p1"] * 8
            assert client.stats.rate_limited == 8

    asyncio.run(scenario())
    assert throttles == [(4, 0.3)]  # one narrowing for the 8 answers of one window
    refused = [s.at for s in fake.log if s.status == 429]
    resent = sorted(s.at for s in fake.log if s.status == 200)
    assert len(refused) == len(resent) == 8
    assert resent[0] - max(refused) >= 0.25  # every sender waited out Retry-After
    # ... then one went first, not all eight: the next only after it was answered (50 ms)
    assert resent[1] - resent[0] >= 0.04


def test_a_server_answering_only_429_fails_every_caller_after_the_deadline(
    served: tuple[FakeFhir, str],
) -> None:
    fake, base = served
    fake.reset()
    fake.fail_next(1000, 429, headers={"Retry-After": "0.1"})

    async def scenario() -> None:
        options = settings(base, transport="httpx", deadline_seconds=0.5, max_attempts=1)
        async with FhirClient(options) as client:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.read("p1") for _ in range(6)), return_exceptions=True
            )
            assert time.monotonic() - started < 1.5
            assert all(isinstance(r, FhirUnavailable) for r in results), results
            assert "only 429 answers" in str(results[0])

    asyncio.run(scenario())


# --- the job -----------------------------------------------------------------------------------


def sheet(path: Path, rows: int) -> Path:
    """``rows`` rows, one per patient of ``bench.data.patients(rows)``, each a real update."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["last_updated_date", "nik_identifier", "name", "phone_number"])
        for i in range(rows):
            writer.writerow(["23-09-2025", f"3171{i:012d}", f"PATIENT {i}", f"08{1100000000 + i}"])
    return path


def run_one_task(sim: RunningSim, tmp_path: Path, rows: int, **extra: str) -> Any:
    """One task syncing ``rows`` rows; the run's state afterwards."""
    state = tmp_path / "s.db"
    env = {
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "SHEET_CSV": str(sheet(tmp_path / "sheet.csv", rows)),
        "RUN_DATE": DATE,
        "STATE_PATH": str(state),
        "FHIR_BACKOFF_SECONDS": "0.01",
        "FHIR_TIMEOUT_SECONDS": "2",
        "CLOUD_RUN_EXECUTION": "exec-1",
        **extra,
    }
    assert run_task(load_settings(env)) == 0
    store = SqliteStore(state)
    try:
        return store.get_run(DATE)
    finally:
        store.close()


@contextmanager
def captured() -> Iterator[list[logging.LogRecord]]:
    events: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = events.append  # type: ignore[method-assign]
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield events
    finally:
        logger.removeHandler(handler)


def named(events: list[logging.LogRecord], event: str) -> list[logging.LogRecord]:
    return [e for e in events if e.json_fields["event"] == event]  # type: ignore[attr-defined]


def test_unpaced_senders_against_5_per_second_all_land(tmp_path: Path) -> None:
    """The measured case: no client-side limit, 16 in flight, a server admitting 5 req/s."""
    with simulator(list(patients(40)), rate_limit=5) as sim, captured() as events:
        run = run_one_task(
            sim,
            tmp_path,
            40,
            FHIR_RATE_LIMIT="0",
            FHIR_CONCURRENCY="16",
            FHIR_BATCH_SIZE="0",
        )
    assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 40}
    assert sim.state.requests["PUT 200"] == 40
    assert set(sim.state.puts_by_patient.values()) == {1}  # no patient PUT twice
    assert sim.state.requests["GET 429"] + sim.state.requests["PUT 429"] > 0
    throttled = named(events, "fhir_throttled")
    assert throttled and all(e.levelno == logging.WARNING for e in throttled)
    assert throttled[0].json_fields["limit"] < 16  # type: ignore[attr-defined]
    refused = sim.state.requests["GET 429"] + sim.state.requests["PUT 429"]
    assert len(throttled) < refused  # not a line per 429 (fhir_retry has those)


def test_a_whole_bundle_429_costs_no_attempts(tmp_path: Path) -> None:
    """Batch mode: Bundles of 2 against 4 Bundles/s; one attempt per request would not do."""
    with simulator(list(patients(12)), rate_limit=4) as sim:
        run = run_one_task(
            sim,
            tmp_path,
            12,
            FHIR_RATE_LIMIT="0",
            FHIR_CONCURRENCY="16",
            FHIR_BATCH_SIZE="2",
            FHIR_MAX_ATTEMPTS="1",
        )
    assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 12}
    assert sim.state.requests["POST 429"] > 0
    assert set(sim.state.puts_by_patient.values()) == {1}


def test_entry_429s_in_a_batch_response_cost_no_attempts(tmp_path: Path) -> None:
    with simulator(list(patients(6))) as sim:
        sim.state.fail_next_entries(3, 429)
        run = run_one_task(sim, tmp_path, 6, FHIR_BATCH_SIZE="3", FHIR_MAX_ATTEMPTS="1")
    assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 6}
    assert sim.state.entries["GET 429"] + sim.state.entries["PUT 429"] == 3


@pytest.mark.parametrize("batch", ["0", "auto"], ids=["per-row", "batch"])
def test_a_server_answering_only_429_past_the_deadline_defers_rows(
    tmp_path: Path, batch: str
) -> None:
    # One request in 1000 s is admitted: every other answer is 429 with Retry-After 1000.
    with simulator(list(patients(10)), rate_limit=0.001) as sim:
        run = run_one_task(
            sim,
            tmp_path,
            10,
            FHIR_DEADLINE_SECONDS="1",
            FHIR_RATE_LIMIT="0",
            FHIR_BATCH_SIZE=batch,
        )
    assert run.status is RunStatus.PARTIAL
    assert run.counts["deferred"] >= 9 and sum(run.counts.values()) == 10
    assert sum(sim.state.puts_by_patient.values()) <= 1


def test_default_limits_against_a_200_per_second_server(tmp_path: Path) -> None:
    with simulator(list(patients(200)), rate_limit=200) as sim:
        run = run_one_task(sim, tmp_path, 200, FHIR_BATCH_SIZE="0")
    assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 200}
    assert set(sim.state.puts_by_patient.values()) == {1}
