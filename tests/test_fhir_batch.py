"""Batch mode's transport: how calls are grouped into Bundles and how entry answers map back.

Against the simulator in-process (``httpx.ASGITransport``), whose batch answers follow
Medplum's; odd answers other servers give come from ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from common.fhir import (
    BatchingRegistry,
    FhirAuthError,
    FhirClient,
    FhirConflict,
    FhirPermanentError,
    FhirSettings,
    FhirTransientError,
    FhirUnavailable,
    parse_capability_statement,
)
from common.patient import patient_niks
from sim.app import capability_statement, create_app
from tests.simulator import API_KEY, sample

pytestmark = pytest.mark.timeout(60)
NIKS = [patient_niks(p)[0] for p in sample()]


def settings(**overrides: Any) -> FhirSettings:
    options: dict[str, Any] = {
        "base_url": "http://sim/fhir",
        "api_key": API_KEY,
        "rate_limit": 0,
        "backoff_seconds": 0.001,
        "backoff_cap_seconds": 0.01,
        "max_attempts": 3,
    }
    return FhirSettings(**{**options, **overrides})


def run_with(
    scenario: Callable[[BatchingRegistry, Any], Awaitable[Any]],
    size: int | None = 50,
    *,
    app_options: dict[str, Any] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> tuple[Any, Any, list[str]]:
    """Run ``scenario(registry, sim state)``; returns its result, the sim and fallback warnings."""
    app = create_app(copy.deepcopy(sample()), api_key=API_KEY, **(app_options or {}))
    warnings: list[str] = []

    async def go() -> Any:
        async with FhirClient(
            settings(**overrides), transport=transport or httpx.ASGITransport(app=app)
        ) as client:
            registry = BatchingRegistry(client, size, on_fallback=warnings.append)
            return await scenario(registry, app.state.sim)

    return asyncio.run(go()), app.state.sim, warnings


def test_concurrent_calls_share_bundles_of_at_most_size() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(registry.search_by_nik(n) for n in NIKS * 3))

    found, sim, _ = run_with(scenario, size=4)
    assert [m[0]["id"] for m in found] == [f"patient-{i:03d}" for i in range(1, 11)] * 3
    assert sim.requests == {"POST 200": 8}  # 30 searches: 7 Bundles of 4 and one of 2
    assert sim.entries == {"GET 200": 30}


def test_a_lone_call_goes_after_the_linger_not_waiting_for_a_full_bundle() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        return await asyncio.wait_for(registry.read("patient-002"), timeout=1)

    patient, sim, _ = run_with(scenario, size=50)
    assert patient["id"] == "patient-002" and sim.requests == {"POST 200": 1}


def test_update_sends_if_match_per_entry_and_a_stale_one_is_a_conflict() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        patient = await registry.read("patient-001")
        stored = await registry.update(patient, version_id="v001")
        with pytest.raises(FhirConflict) as conflict:
            await registry.update(patient, version_id="v001")
        return stored, conflict.value

    (stored, conflict), sim, _ = run_with(scenario)
    assert stored["meta"]["versionId"] == "v002" and conflict.status == 412
    assert sim.entries == {"GET 200": 1, "PUT 200": 1, "PUT 412": 1}
    assert sim.puts_by_patient == {"patient-001": 1}


def test_two_updates_of_one_patient_never_share_a_bundle() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> list[Any]:
        patient = sim.patient("patient-001")
        return await asyncio.gather(
            registry.update(patient, version_id="v001"),
            registry.update(patient, version_id="v001"),
            registry.read("patient-002"),
            return_exceptions=True,
        )

    results, sim, warnings = run_with(scenario, size=50)
    # Medplum refuses a Bundle modifying one resource twice (400, whole): two Bundles instead,
    # and the second update meets the version the first one wrote.
    assert sim.requests == {"POST 200": 2} and warnings == []
    assert isinstance(results[1], FhirConflict) and results[2]["id"] == "patient-002"


def test_entry_4xx_are_the_calls_own_errors() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> list[Any]:
        sim.refuse_puts("patient-002", 422)
        return await asyncio.gather(
            registry.read("no-such-patient"),
            registry.update(sim.patient("patient-002"), version_id="v001"),
            registry.read("patient-003"),
            return_exceptions=True,
        )

    (missing, refused, fine), sim, _ = run_with(scenario)
    assert isinstance(missing, FhirPermanentError) and missing.status == 404
    assert isinstance(refused, FhirPermanentError) and str(refused) == (
        "PUT Patient update: 422: the server refused this Patient"
    )
    assert fine["id"] == "patient-003" and sim.requests == {"POST 200": 1}


def test_entry_5xx_are_retried_in_later_bundles_and_give_up_like_a_request() -> None:
    async def retried(registry: BatchingRegistry, sim: Any) -> Any:
        sim.fail_next_entries(2, 503)
        return await registry.search_by_nik(NIKS[0])

    found, sim, _ = run_with(retried)
    assert found[0]["id"] == "patient-001" and sim.requests == {"POST 200": 3}

    async def exhausted(registry: BatchingRegistry, sim: Any) -> Any:
        sim.fail_next_entries(3, 503)
        with pytest.raises(FhirTransientError) as failed:
            await registry.search_by_nik(NIKS[0])
        return failed.value

    error, sim, _ = run_with(exhausted)
    assert (error.status, error.attempts) == (503, 3) and "after 3 attempts" in str(error)


def test_a_failing_bundle_is_retried_whole_and_every_row_gets_its_failure() -> None:
    async def retried(registry: BatchingRegistry, sim: Any) -> Any:
        sim.fail_next(2, 503)
        return await asyncio.gather(*(registry.search_by_nik(n) for n in NIKS[:5]))

    found, sim, _ = run_with(retried)
    assert len(found) == 5 and sim.requests == {"POST 503": 2, "POST 200": 1}

    async def down(registry: BatchingRegistry, sim: Any) -> Any:
        sim.set_down(True)
        return await asyncio.gather(
            *(registry.search_by_nik(n) for n in NIKS[:5]), return_exceptions=True
        )

    failures, sim, _ = run_with(down)
    assert all(isinstance(f, FhirTransientError) for f in failures)
    assert sim.requests == {"POST 503": 3}  # one Bundle, three attempts, for five rows


def test_past_the_deadline_every_waiting_row_gets_unavailable() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        sim.set_down(True)
        return await asyncio.gather(
            *(registry.search_by_nik(n) for n in NIKS), return_exceptions=True
        )

    failures, _, _ = run_with(
        scenario,
        size=2,
        max_attempts=100,
        breaker_failure_threshold=2,
        breaker_probe_seconds=0.05,
        deadline_seconds=0.3,
    )
    assert all(isinstance(f, FhirUnavailable) for f in failures)


def test_a_bundle_answered_401_is_every_rows_auth_error() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        return await asyncio.gather(
            *(registry.search_by_nik(n) for n in NIKS[:3]), return_exceptions=True
        )

    failures, sim, _ = run_with(scenario, api_key="wrong")
    assert all(isinstance(f, FhirAuthError) for f in failures)
    assert sim.requests == {"POST 401": 1}


@pytest.mark.parametrize("status", [400, 404, 405, 501])
def test_a_server_refusing_batch_switches_to_per_row_with_one_warning(status: int) -> None:
    def refusing(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(status, json={"resourceType": "OperationOutcome"})
        return forward(request)

    app = create_app(copy.deepcopy(sample()), api_key=API_KEY)
    forward = sync_forwarder(app)

    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        first = await asyncio.gather(*(registry.search_by_nik(n) for n in NIKS[:4]))
        later = await registry.read("patient-005")
        return first, later, registry.size

    (first, later, size), _, warnings = run_with(
        scenario, size=50, transport=httpx.MockTransport(refusing)
    )
    assert [m[0]["id"] for m in first] == [
        "patient-001",
        "patient-002",
        "patient-003",
        "patient-004",
    ]
    assert later["id"] == "patient-005" and size == 0
    assert len(warnings) == 1 and f"POST batch: {status}" in warnings[0]


def sync_forwarder(app: Any) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler answering from the simulator's state (per-row calls only)."""
    sim = app.state.sim

    def answer(request: httpx.Request) -> httpx.Response:
        from sim import _interactions as fhir

        path = request.url.path.removeprefix("/fhir/")
        if path == "Patient":
            result = fhir.search(sim, request.url.params, "http://sim/fhir")
        else:
            result = fhir.read(sim, path.removeprefix("Patient/"))
        return httpx.Response(result.status, content=orjson.dumps(result.body))

    return answer


def test_other_servers_status_spelling_and_a_missing_body_are_understood() -> None:
    """HAPI answers ``"200 OK"``; a server may leave the resource out and give an etag."""

    def hapi(request: httpx.Request) -> httpx.Response:
        bundle = orjson.loads(request.content)
        entries = [{"response": {"status": "200 OK", "etag": 'W/"7"'}} for _ in bundle["entry"]]
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        return await registry.update(
            {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "6"}}, version_id="6"
        )

    stored, _, _ = run_with(scenario, transport=httpx.MockTransport(hapi))
    assert stored["meta"]["versionId"] == "7"


def test_an_answer_that_is_no_batch_response_turns_batch_off() -> None:
    def confused(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(
                200, json={"resourceType": "Bundle", "type": "batch-response", "entry": []}
            )
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        return await registry.search_by_nik(NIKS[0]), registry.size

    (found, size), _, warnings = run_with(scenario, transport=httpx.MockTransport(confused))
    assert found == [] and size == 0
    assert warnings and "0 entries for 1 requests" in warnings[0]


@pytest.mark.parametrize(("batch", "size"), [(True, 50), (False, 0)])
def test_auto_asks_the_capability_statement_once(batch: bool, size: int) -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        await asyncio.gather(*(registry.search_by_nik(n) for n in NIKS))
        return registry.size

    decided, sim, warnings = run_with(scenario, size=None, app_options={"batch": batch})
    assert decided == size and warnings == []
    assert sim.requests["GET metadata"] == 1
    assert ("POST 200" in sim.requests) is batch


def test_capability_statement_parsing() -> None:
    listed = parse_capability_statement(capability_statement(batch=True))
    assert listed.batch and listed.fhir_version == "4.0.1"
    assert {"read", "update", "search-type"} <= listed.patient_interactions
    assert not parse_capability_statement(capability_statement(batch=False)).batch
    client_mode = {
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "client", "interaction": [{"code": "batch"}]}],
    }
    assert not parse_capability_statement(client_mode).batch
    with pytest.raises(ValueError, match="not a CapabilityStatement"):
        parse_capability_statement({"resourceType": "Bundle"})


def test_rows_in_flight_fill_every_connection_with_a_bundle() -> None:
    async def scenario(registry: BatchingRegistry, sim: Any) -> Any:
        return registry.rows_in_flight(64)

    assert run_with(scenario, size=50)[0] == 3200
    assert run_with(scenario, size=0)[0] == 64
    assert run_with(scenario, size=None)[0] == 3200
