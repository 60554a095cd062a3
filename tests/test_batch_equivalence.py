"""Batch mode is transport only: on random registries, rows and server faults, a shard synced in
batch Bundles ends exactly as one synced a request per call — the same registry, the same
outcome for every row — and no patient is written twice in either mode.

Each example runs the job's shard path (``sync_shard``) twice against fresh simulators served
in-process (``httpx.ASGITransport``), once per mode.
"""

from __future__ import annotations

import asyncio
import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.fhir import BatchingRegistry, FhirClient, FhirSettings
from common.outcomes import RowOutcome, Status
from common.patient import NIK_SYSTEM
from common.privacy import DEVELOPMENT_LEDGER_KEY
from common.recording import RowResult
from common.store import SqliteStore, WorkItem
from common.sync import Ledger, ShardProgress, sync_shard
from sim.app import create_app

# Slow (~3 s): many examples, each synced twice. Not in scripts/test-fast.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NUMBERS = [f"+62812000000{i:02d}" for i in range(6)]  # E.164, as WorkItem holds them


@dataclass(frozen=True)
class Scenario:
    patients: list[dict[str, Any]]
    items: list[WorkItem]
    bundle_failures: list[int]  # whole requests failing (a Bundle in batch mode), in order
    entry_failures: list[int]  # batch entries failing inside a good Bundle
    racing_once: frozenset[str]  # another writer changes these patients before our first PUT
    racing_always: frozenset[str]  # … before every PUT: the conflict persists
    refused: frozenset[str]  # the server refuses PUTs of these (422)
    down: bool
    batch_supported: bool
    batch_size: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(1, 10))
    patients = []
    for i in range(count):
        telecom = []
        current = draw(st.sampled_from([None, *NUMBERS]))
        if current is not None:
            telecom.append({"system": "phone", "use": "mobile", "value": "0" + current[3:]})
        patients.append(
            {
                "resourceType": "Patient",
                "id": f"p{i}",
                "meta": {"versionId": "v001"},
                "identifier": [{"system": NIK_SYSTEM, "value": f"3171{i:012d}"}],
                "telecom": telecom,
            }
        )
    twins = draw(st.sets(st.integers(0, count - 1), max_size=2))
    for i in twins:  # a second record with the same NIK: ambiguous
        patients.append({**copy.deepcopy(patients[i]), "id": f"p{i}-twin"})
    ids = [p["id"] for p in patients]
    niks = draw(st.sets(st.integers(0, count + 2), min_size=1))  # count.. : not in the registry
    items = [
        WorkItem(
            row=row, date="2025-09-23", nik=f"3171{n:012d}", phone=draw(st.sampled_from(NUMBERS))
        )
        for row, n in enumerate(sorted(niks), start=2)
    ]
    transient = st.sampled_from([500, 503, 429])
    return Scenario(
        patients=patients,
        items=items,
        bundle_failures=draw(st.lists(transient, max_size=2)),
        entry_failures=draw(st.lists(transient, max_size=2)),
        racing_once=frozenset(draw(st.sets(st.sampled_from(ids), max_size=3))),
        racing_always=frozenset(draw(st.sets(st.sampled_from(ids), max_size=1))),
        refused=frozenset(draw(st.sets(st.sampled_from(ids), max_size=2))),
        down=draw(st.integers(0, 9)) == 0,
        batch_supported=draw(st.integers(0, 7)) > 0,
        batch_size=draw(st.integers(1, 5)),
    )


class Collect:
    def __init__(self) -> None:
        self.results: list[RowResult] = []

    async def flush(self, results: Sequence[RowResult], progress: ShardProgress) -> None:
        self.results.extend(results)


def run(
    scenario: Scenario, batch_size: int, write: str = "update-and-patch"
) -> tuple[dict[int, RowOutcome], list[Any], Any]:
    """The shard synced against a fresh simulator serving ``write`` (``patch-only``: PUT answers
    405 and the CapabilityStatement lists only patch, so FHIR_WRITE=auto patches)."""
    app = create_app(copy.deepcopy(scenario.patients), batch=scenario.batch_supported, write=write)
    sim = app.state.sim
    sim.set_down(scenario.down)
    for status in scenario.bundle_failures:
        sim.fail_next(1, status)
    for status in scenario.entry_failures:
        sim.fail_next_entries(1, status)
    for pid in scenario.refused:
        sim.refuse_puts(pid, 422)
    raced: set[str] = set()

    def other_writer(pid: str, state: Any) -> None:
        if pid in scenario.racing_always or (pid in scenario.racing_once and pid not in raced):
            raced.add(pid)
            current = copy.deepcopy(state.patient(pid))
            current["telecom"] = [
                *current.get("telecom", []),
                {"system": "email", "value": "x@y.z"},
            ]
            state.store(pid, current)

    sim.on_before_put(other_writer)
    fhir = FhirSettings(
        base_url="http://sim/fhir",
        rate_limit=0,
        concurrency=4,
        max_attempts=3,
        backoff_seconds=0.001,
        backoff_cap_seconds=0.005,
        breaker_failure_threshold=50,
        deadline_seconds=5,
    )
    hooks = Collect()

    async def go() -> None:
        async with FhirClient(fhir, transport=httpx.ASGITransport(app=app)) as client:
            registry = BatchingRegistry(client, batch_size)
            await sync_shard(
                scenario.items,
                registry,
                store,
                Ledger(DEVELOPMENT_LEDGER_KEY),
                hooks,
                concurrency=registry.rows_in_flight(4),
            )

    with tempfile.TemporaryDirectory() as work:
        store = SqliteStore(Path(work) / "state.sqlite3")
        try:
            asyncio.run(go())
        finally:
            store.close()
    outcomes = {r.outcome.row: r.outcome for r in hooks.results}
    registry = [e["resource"] for e in sim.bundle()["patients_after_phone_update"]]
    for patient in registry:
        patient.get("meta", {}).pop("lastUpdated", None)
    return outcomes, registry, sim


def comparable(outcome: RowOutcome) -> RowOutcome:
    """Deferred rows name the request that failed (a search, or a Bundle): compare the rest."""
    if outcome.status is Status.DEFERRED:
        return RowOutcome(outcome.row, outcome.status, "", outcome.patient_id, outcome.nik_masked)
    return outcome


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_batch_and_per_row_modes_end_the_same(scenario: Scenario) -> None:
    per_row, registry_per_row, sim_per_row = run(scenario, 0)
    batched, registry_batched, sim_batched = run(scenario, scenario.batch_size)
    assert set(per_row) == set(batched) == {i.row for i in scenario.items}
    assert {r: comparable(o) for r, o in batched.items()} == {
        r: comparable(o) for r, o in per_row.items()
    }
    assert registry_batched == registry_per_row
    for sim in (sim_per_row, sim_batched):
        assert all(n == 1 for n in sim.puts_by_patient.values())
    assert "POST 200" not in sim_per_row.requests
    if scenario.batch_supported and not scenario.down:  # batch mode really sent Bundles
        assert sim_batched.requests["POST 200"] >= 1
        assert not any(k.startswith(("GET 2", "PUT 2")) for k in sim_batched.requests)
