"""The FHIR client against the simulator: auth, retries, 429 pacing, timeouts, breaker, conflicts."""

import asyncio
import time
from typing import Any

import pytest

from common.fhir import (
    FhirAuthError,
    FhirClient,
    FhirConflict,
    FhirPermanentError,
    FhirSettings,
    FhirTransientError,
    FhirUnavailable,
)
from common.fhir._client import retry_after_seconds
from tests.simulator import API_KEY, RunningSim, simulator

NIK = "3171044203920001"
TRANSPORTS = ["aiohttp", "httpx"]


def settings(sim: RunningSim, **overrides: Any) -> FhirSettings:
    base: dict[str, Any] = {
        "base_url": sim.fhir,
        "api_key": API_KEY,
        "rate_limit": 0,
        "backoff_base_seconds": 0.01,
        "backoff_cap_seconds": 0.05,
        "timeout_seconds": 2.0,
        "deadline_seconds": 5.0,
    }
    return FhirSettings(**{**base, **overrides})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_search_read_and_update_with_if_match(transport: str) -> None:
    with simulator() as sim:

        async def scenario() -> None:
            async with FhirClient(settings(sim, transport=transport)) as client:
                (patient,) = await client.search_by_nik(NIK)
                assert await client.search_by_nik("0000000000000000") == []
                assert (await client.read(patient["id"]))["id"] == patient["id"]
                stored = await client.update(patient, version_id="v001")
                assert stored["meta"]["versionId"] == "v002"
                with pytest.raises(FhirConflict):
                    await client.update(patient, version_id="v001")
                assert client.stats.requests["PUT 412"] == 1  # a conflict is never retried

        run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_5xx_are_retried_until_success(transport: str) -> None:
    with simulator() as sim:
        sim.state.fail_next(2, 503)

        async def scenario() -> None:
            async with FhirClient(settings(sim, transport=transport)) as client:
                assert len(await client.search_by_nik(NIK)) == 1
                assert client.stats.retries == 2
                assert client.stats.requests["GET 503"] == 2

        run(scenario())


def test_retries_are_bounded_and_the_error_names_no_nik() -> None:
    with simulator() as sim:
        sim.state.fail_next(10, 500)

        async def scenario() -> None:
            async with FhirClient(
                settings(sim, max_attempts=3, breaker_failure_threshold=50)
            ) as client:
                with pytest.raises(FhirTransientError) as exc:
                    await client.search_by_nik(NIK)
                assert exc.value.attempts == 3 and exc.value.status == 500
                assert NIK not in str(exc.value)

        run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_key_is_a_permanent_auth_error(transport: str) -> None:
    with simulator() as sim:

        async def scenario() -> None:
            async with FhirClient(settings(sim, api_key="wrong", transport=transport)) as client:
                with pytest.raises(FhirAuthError) as exc:
                    await client.read("patient-001")
                assert exc.value.status == 401 and "x-api-key" in exc.value.diagnostics
                assert client.stats.retries == 0

        run(scenario())


def test_other_4xx_are_permanent_with_the_servers_diagnostics() -> None:
    with simulator() as sim:

        async def scenario() -> None:
            async with FhirClient(settings(sim)) as client:
                with pytest.raises(FhirPermanentError) as exc:
                    await client.update(
                        {"resourceType": "Patient", "id": "nobody"}, version_id=None
                    )
                assert exc.value.status == 404 and "does not create" in exc.value.diagnostics

        run(scenario())


def test_429_retry_after_pauses_every_sender() -> None:
    with simulator(rate_limit=2) as sim:

        async def scenario() -> float:
            async with FhirClient(settings(sim, concurrency=4)) as client:
                started = time.monotonic()
                await asyncio.gather(*(client.read("patient-001") for _ in range(6)))
                assert client.stats.rate_limited >= 1
                return time.monotonic() - started

        elapsed = run(scenario())
        assert elapsed >= 1.0  # Retry-After: 1 was honoured, not hammered through
        assert sim.state.requests["GET 429"] <= 6  # no storm: each refusal paused all senders


def test_timeouts_are_retried() -> None:
    with simulator() as sim:
        sim.state.delay_next(1, 1.0)

        async def scenario() -> None:
            async with FhirClient(settings(sim, timeout_seconds=0.3)) as client:
                assert (await client.read("patient-001"))["id"] == "patient-001"
                assert client.stats.requests["GET 0"] == 1

        run(scenario())


def test_connection_refused_is_transient_with_status_0() -> None:
    async def scenario() -> None:
        dead = FhirSettings(
            base_url="http://127.0.0.1:9/fhir", max_attempts=2, backoff_base_seconds=0.01
        )
        async with FhirClient(dead) as client:
            with pytest.raises(FhirTransientError) as exc:
                await client.read("patient-001")
            assert exc.value.status == 0

    run(scenario())


def test_breaker_waits_for_a_server_that_comes_back() -> None:
    with simulator() as sim:
        sim.state.set_down(True)

        async def scenario() -> None:
            options = {
                "breaker_failure_threshold": 3,
                "breaker_probe_seconds": 0.1,
                "max_attempts": 4,
            }
            async with FhirClient(settings(sim, **options)) as client:
                calls = [asyncio.create_task(client.read("patient-001")) for _ in range(8)]
                await asyncio.sleep(0.8)
                down_requests = sum(n for k, n in sim.state.requests.items() if k.endswith("503"))
                sim.state.set_down(False)
                results = await asyncio.gather(*calls)
                assert all(r["id"] == "patient-001" for r in results)
                # While open, the breaker let only probes through: far fewer than 8 callers x 4 tries.
                assert down_requests < 8 * 4

        run(scenario())


def test_breaker_gives_up_after_the_deadline() -> None:
    with simulator() as sim:
        sim.state.set_down(True)

        async def scenario() -> None:
            options = {
                "breaker_failure_threshold": 2,
                "breaker_probe_seconds": 0.1,
                "deadline_seconds": 0.5,
            }
            async with FhirClient(settings(sim, **options)) as client:
                started = time.monotonic()
                results = await asyncio.gather(
                    *(client.read("patient-001") for _ in range(5)), return_exceptions=True
                )
                assert all(isinstance(r, FhirUnavailable) for r in results[2:])
                assert all(isinstance(r, FhirTransientError) for r in results)
                assert time.monotonic() - started < 3

        run(scenario())


def test_rate_limit_keeps_requests_near_the_configured_rate() -> None:
    with simulator() as sim:

        async def scenario() -> float:
            async with FhirClient(settings(sim, rate_limit=50, concurrency=16)) as client:
                started = time.monotonic()
                await asyncio.gather(*(client.read("patient-001") for _ in range(60)))
                return 60 / (time.monotonic() - started)

        rate = run(scenario())
        assert 40 <= rate <= 60


def test_the_api_key_is_never_in_repr() -> None:
    assert "s3cr3t" not in repr(FhirSettings(base_url="http://x/fhir", api_key="s3cr3t"))


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), ("", 0.0), ("soon", 0.0)])
def test_retry_after_forms(header: str, seconds: float) -> None:
    assert retry_after_seconds(header) == seconds


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        FhirSettings(base_url="http://x/fhir", concurrency=0)
    with pytest.raises(ValueError, match="base_url"):
        FhirSettings(base_url="x")
