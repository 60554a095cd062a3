"""The FHIR client: auth header, search/read/update, error sorting, retries, 429 pacing,
timeouts, connection errors, the circuit breaker, the rate limiter and what messages may say.

Self-contained: a small FHIR-ish starlette app of this file's own (``FakeFhir``), served on
loopback by uvicorn in a thread for the transports that matter (``aiohttp``, ``httpx``) and
in-process through ``httpx.ASGITransport``/``httpx.MockTransport`` where the network does not.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from common.errors import PhonesyncError
from common.fhir import (
    FhirAuthError,
    FhirClient,
    FhirConflict,
    FhirError,
    FhirPermanentError,
    FhirSettings,
    FhirTransientError,
    FhirUnavailable,
    RequestStats,
)
from common.fhir._ratelimit import RateLimiter
from common.retry import backoff_delay, parse_retry_after

API_KEY = "test-key-5f3a9c"
NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
NIK_ONE = "3171044203920001"  # one patient
NIK_TWO = "3171044203920002"  # two patients (a duplicate record)
NIK_NONE = "3171044203920009"  # nobody
NETWORK = ["aiohttp", "httpx"]

pytestmark = pytest.mark.timeout(60)


# --- a small FHIR server ---------------------------------------------------------------------


def patient(pid: str, nik: str, version: int = 1) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": str(version)},
        "identifier": [{"system": NIK_SYSTEM, "value": nik}],
        "telecom": [],
    }


def outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }


@dataclass
class Scripted:
    status: int = 0  # 0: answer normally (after the delay)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    at: float
    status: int = 0


class FakeFhir:
    """Patients in memory, If-Match checked, failures scripted per request or ``down``."""

    def __init__(self) -> None:
        self.app = Starlette(
            routes=[Route("/fhir/{path:path}", self.handle, methods=["GET", "PUT"])]
        )
        self.reset()

    def reset(self) -> None:
        self.patients = {
            "p1": patient("p1", NIK_ONE),
            "p2a": patient("p2a", NIK_TWO),
            "p2b": patient("p2b", NIK_TWO, version=4),
        }
        self.script: deque[Scripted] = deque()
        self.log: list[Seen] = []
        self.down = False
        self.conflict_status = 412
        self.page_size = 0  # 0: one page

    def fail_next(self, n: int, status: int, **options: Any) -> None:
        self.script.extend(Scripted(status, **options) for _ in range(n))

    def delay_next(self, n: int, seconds: float) -> None:
        self.script.extend(Scripted(delay=seconds) for _ in range(n))

    def count(self, key: str) -> int:
        return sum(1 for s in self.log if f"{s.method} {s.status}" == key)

    async def handle(self, request: Request) -> Response:
        seen = Seen(request.method, request.url.path, dict(request.headers), time.monotonic())
        self.log.append(seen)
        response = await self._answer(request)
        seen.status = response.status_code
        return response

    async def _answer(self, request: Request) -> Response:
        step = self.script.popleft() if self.script else Scripted()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status:
            return self._json(step.body or outcome("scripted"), step.status, step.headers)
        if self.down:
            return self._json(outcome("down for maintenance"), 503)
        if request.headers.get("x-api-key") != API_KEY:
            key = request.headers.get("x-api-key", "")
            return self._json(outcome(f"unknown x-api-key {key!r}"), 401)
        path = request.path_params["path"]
        if path == "Patient" and request.method == "GET":
            return self._search(request)
        pid = path.removeprefix("Patient/")
        if pid not in self.patients:
            return self._json(outcome(f"Patient/{pid} is not known"), 404)
        stored = self.patients[pid]
        if request.method == "GET":
            return self._json(stored)
        if_match = request.headers.get("if-match")
        if if_match is not None and if_match != f'W/"{stored["meta"]["versionId"]}"':
            return self._json(outcome("version conflict"), self.conflict_status)
        body = orjson.loads(await request.body())
        version = int(stored["meta"]["versionId"]) + 1
        self.patients[pid] = {**body, "meta": {"versionId": str(version)}}
        return self._json(self.patients[pid])

    def _search(self, request: Request) -> Response:
        system, _, nik = request.query_params.get("identifier", "").partition("|")
        found = [
            p
            for p in self.patients.values()
            if any(i["system"] == system and i["value"] == nik for i in p["identifier"])
        ]
        page = int(request.query_params.get("_page", "1"))
        size = self.page_size or max(len(found), 1)
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [
                {"resource": p, "search": {"mode": "match"}}
                for p in found[(page - 1) * size : page * size]
            ],
        }
        if page * size < len(found):
            following = request.url.include_query_params(_page=page + 1)
            bundle["link"].append({"relation": "next", "url": str(following)})
        return self._json(bundle)

    @staticmethod
    def _json(
        body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        return Response(orjson.dumps(body), status, headers, media_type="application/fhir+json")


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeFhir, str]]:
    fake = FakeFhir()
    with serve(fake.app) as base:
        yield fake, base


@pytest.fixture
def fake(served: tuple[FakeFhir, str]) -> FakeFhir:
    served[0].reset()
    return served[0]


def settings(base: str, **overrides: Any) -> FhirSettings:
    options: dict[str, Any] = {
        "base_url": f"{base}/fhir",
        "api_key": API_KEY,
        "rate_limit": 0,
        "backoff_seconds": 0.01,
        "backoff_cap_seconds": 0.05,
        "timeout_seconds": 2.0,
        "deadline_seconds": 5.0,
        "breaker_probe_seconds": 0.1,
    }
    return FhirSettings(**{**options, **overrides})


def client_for(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str], **overrides: Any
) -> FhirClient:
    """``mode``: a real transport over loopback ("aiohttp"/"httpx") or "asgi" in-process."""
    if mode == "asgi":
        return FhirClient(
            settings("http://fhir.test", **overrides), transport=httpx.ASGITransport(fake.app)
        )
    return FhirClient(settings(served[1], transport=mode, **overrides))


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- the happy path, on both transports ----------------------------------------------------


@pytest.mark.parametrize("mode", NETWORK)
def test_search_read_update_and_the_api_key_on_every_request(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.fail_next(1, 503)  # a retried request carries the key too

    async def scenario() -> None:
        async with client_for(mode, fake, served) as client:
            assert await client.search_by_nik(NIK_NONE) == []
            (one,) = await client.search_by_nik(NIK_ONE)
            assert one["id"] == "p1"
            assert {p["id"] for p in await client.search_by_nik(NIK_TWO)} == {"p2a", "p2b"}
            assert (await client.read("p1"))["meta"]["versionId"] == "1"
            stored = await client.update({**one, "telecom": [{"value": "x"}]}, version_id="1")
            assert stored["meta"]["versionId"] == "2" and stored["telecom"] == [{"value": "x"}]

    run(scenario)
    assert len(fake.log) == 6
    assert all(s.headers.get("x-api-key") == API_KEY for s in fake.log)
    assert all(s.headers.get("accept") == "application/fhir+json" for s in fake.log)
    (put,) = [s for s in fake.log if s.method == "PUT"]
    assert put.headers["if-match"] == 'W/"1"'
    assert put.headers["content-type"] == "application/fhir+json"


@pytest.mark.parametrize("mode", NETWORK)
def test_search_follows_next_links(mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]) -> None:
    fake.page_size = 1

    async def scenario() -> list[dict[str, Any]]:
        async with client_for(mode, fake, served) as client:
            return await client.search_by_nik(NIK_TWO)

    assert [p["id"] for p in run(scenario)] == ["p2a", "p2b"]
    assert [s.method for s in fake.log] == ["GET", "GET"]


def test_update_without_version_sends_no_if_match(
    fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    async def scenario() -> None:
        async with client_for("asgi", fake, served) as client:
            await client.update(patient("p1", NIK_ONE), version_id=None)

    run(scenario)
    assert "if-match" not in fake.log[0].headers


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [{"resource": patient("a", NIK_ONE)}],
        [{"resource": patient("a", NIK_ONE)}, {"resource": patient("b", NIK_ONE)}],
    ],
)
def test_searchset_pages_of_0_1_2_entries(entries: list[dict[str, Any]]) -> None:
    extras = [
        {"resource": outcome("warning"), "search": {"mode": "outcome"}},
        {"resource": {"resourceType": "Organization", "id": "o"}, "search": {"mode": "include"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries + extras}

    async def scenario() -> list[dict[str, Any]]:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=bundle))
        async with FhirClient(settings("http://fhir.test"), transport=transport) as client:
            return await client.search_by_nik(NIK_ONE)

    assert run(scenario) == [e["resource"] for e in entries]


def test_a_next_link_to_another_host_is_not_followed() -> None:
    hosts: list[str] = []
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": "http://elsewhere.test/fhir/Patient?page=2"}],
    }

    def answer(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(200, json=bundle)

    async def scenario() -> None:
        transport = httpx.MockTransport(answer)
        async with FhirClient(settings("http://fhir.test"), transport=transport) as client:
            with pytest.raises(FhirPermanentError, match="next page link"):
                await client.search_by_nik(NIK_ONE)

    run(scenario)
    assert hosts == ["fhir.test"]


def test_an_update_answered_without_a_body_takes_the_etag_version() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["prefer"] == "return=representation"
        return httpx.Response(200, headers={"ETag": 'W/"7"'})

    async def scenario() -> dict[str, Any]:
        transport = httpx.MockTransport(answer)
        async with FhirClient(settings("http://fhir.test"), transport=transport) as client:
            return await client.update(patient("p1", NIK_ONE), version_id="6")

    assert run(scenario)["meta"]["versionId"] == "7"


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", NETWORK)
@pytest.mark.parametrize("status", [412, 409])
def test_a_stale_if_match_is_a_conflict_never_retried(
    mode: str, status: int, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.conflict_status = status

    async def scenario() -> RequestStats:
        async with client_for(mode, fake, served) as client:
            with pytest.raises(FhirConflict) as exc:
                await client.update(patient("p1", NIK_ONE), version_id="0")
            assert exc.value.status == status
            return client.stats

    stats = run(scenario)
    assert stats.requests[f"PUT {status}"] == 1 and stats.retries == 0
    assert fake.count(f"PUT {status}") == 1


@pytest.mark.parametrize("mode", NETWORK)
def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    async def scenario() -> None:
        async with client_for(mode, fake, served, api_key="sup3r-s3cr3t-key") as client:
            with pytest.raises(FhirAuthError) as exc:
                await client.search_by_nik(NIK_ONE)
            assert exc.value.status == 401 and "x-api-key" in exc.value.diagnostics
            assert "sup3r-s3cr3t-key" not in str(exc.value)  # the server echoed it; redacted
            assert NIK_ONE not in str(exc.value)
            assert client.stats.retries == 0

    run(scenario)
    assert len(fake.log) == 1


@pytest.mark.parametrize("mode", NETWORK)
def test_other_4xx_are_permanent_with_the_outcome_text_and_no_nik(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "invalid", "diagnostics": f"bad identifier {NIK_ONE}"},
            {"severity": "error", "code": "invalid", "details": {"text": "telecom is wrong"}},
        ],
    }
    fake.fail_next(1, 400, body=body)

    async def scenario() -> None:
        async with client_for(mode, fake, served) as client:
            with pytest.raises(FhirPermanentError) as exc:
                await client.search_by_nik(NIK_ONE)
            assert not isinstance(exc.value, FhirAuthError)
            assert exc.value.status == 400
            assert "bad identifier" in exc.value.diagnostics
            assert "telecom is wrong" in exc.value.diagnostics
            assert NIK_ONE not in str(exc.value) and NIK_ONE not in exc.value.diagnostics
            assert str(exc.value).startswith("GET Patient search: 400")
            assert client.stats.retries == 0

    run(scenario)


def test_the_error_hierarchy() -> None:
    assert issubclass(FhirError, PhonesyncError)
    assert issubclass(FhirAuthError, FhirPermanentError)
    assert issubclass(FhirUnavailable, FhirTransientError)
    for error in (FhirConflict, FhirPermanentError, FhirTransientError):
        assert issubclass(error, FhirError)


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", NETWORK)
def test_5xx_are_retried_until_success(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.fail_next(2, 503)
    hooked: list[tuple[str, int, int]] = []

    async def scenario() -> RequestStats:
        options = settings(served[1], transport=mode)
        async with FhirClient(options, on_retry=lambda *a: hooked.append(a)) as client:
            assert [p["id"] for p in await client.search_by_nik(NIK_ONE)] == ["p1"]
            return client.stats

    stats = run(scenario)
    assert stats.retries == 2
    assert stats.requests == {"GET 503": 2, "GET 200": 1}
    assert len(stats.latencies_ms) == 3 and stats.percentile(50) > 0
    assert hooked == [("GET", 503, 1), ("GET", 503, 2)]


def test_retries_are_bounded_and_the_error_names_no_nik(
    fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.fail_next(10, 500)

    async def scenario() -> None:
        async with client_for("asgi", fake, served, max_attempts=3) as client:
            with pytest.raises(FhirTransientError) as exc:
                await client.search_by_nik(NIK_ONE)
            assert exc.value.attempts == 3 and exc.value.status == 500
            # The OperationOutcome's text is the reason (a NIK in it would be masked).
            assert str(exc.value) == "GET Patient search: 500 (scripted) after 3 attempts"

    run(scenario)
    assert len(fake.log) == 3


@pytest.mark.parametrize("mode", NETWORK)
def test_429_retry_after_pauses_every_sender(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.fail_next(1, 429, headers={"Retry-After": "1"})

    async def scenario() -> RequestStats:
        async with client_for(mode, fake, served, concurrency=4) as client:
            first = asyncio.create_task(client.read("p1"))
            while not client.stats.rate_limited:  # the 429 is in
                await asyncio.sleep(0.005)
            others = [client.read("p1") for _ in range(3)]
            results = await asyncio.gather(first, *others)
            assert all(r["id"] == "p1" for r in results)
            return client.stats

    stats = run(scenario)
    assert stats.rate_limited == 1 and stats.retries == 1
    (refused,) = [s for s in fake.log if s.status == 429]
    later = [s.at - refused.at for s in fake.log if s is not refused]
    assert len(later) == 4
    assert min(later) >= 0.95  # the retry *and* the other senders waited out Retry-After


def test_429_pause_holds_senders_already_waiting_for_a_slot() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(10.0, burst=1)
        await limiter.acquire()  # the bucket is empty: the next slot is 0.1 s away
        started = time.monotonic()
        waiting = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.02)
        limiter.pause_for(0.3)
        await waiting
        assert time.monotonic() - started >= 0.3

    run(scenario)


@pytest.mark.parametrize("mode", NETWORK)
def test_a_timeout_is_retried(mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]) -> None:
    fake.delay_next(1, 1.0)

    async def scenario() -> RequestStats:
        async with client_for(mode, fake, served, timeout_seconds=0.25) as client:
            assert (await client.read("p1"))["id"] == "p1"
            return client.stats

    stats = run(scenario)
    assert stats.requests == {"GET 0": 1, "GET 200": 1} and stats.retries == 1


@pytest.mark.parametrize("mode", NETWORK)
def test_timeouts_that_persist_are_a_transient_error(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.delay_next(3, 0.6)

    async def scenario() -> None:
        async with client_for(mode, fake, served, timeout_seconds=0.2, max_attempts=3) as client:
            with pytest.raises(FhirTransientError) as exc:
                await client.read("p1")
            assert exc.value.status == 0 and exc.value.attempts == 3
            assert "no response" in str(exc.value) and "Timeout" in str(exc.value)

    run(scenario)


@pytest.mark.parametrize("mode", NETWORK)
def test_connection_refused_is_transient_with_status_0(mode: str) -> None:
    base = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with FhirClient(settings(base, transport=mode, max_attempts=2)) as client:
            with pytest.raises(FhirTransientError) as exc:
                await client.search_by_nik(NIK_ONE)
            assert exc.value.status == 0 and exc.value.attempts == 2
            assert not isinstance(exc.value, FhirUnavailable)
            assert NIK_ONE not in str(exc.value) and API_KEY not in str(exc.value)
            assert client.stats.requests == {"GET 0": 2}

    run(scenario)


# --- the circuit breaker -------------------------------------------------------------------


def test_breaker_waits_for_a_server_that_comes_back(
    fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.down = True
    # Each caller has one try left once its first has failed: only the breaker keeps it going.
    options = {"breaker_failure_threshold": 1, "max_attempts": 2, "concurrency": 8}

    async def scenario() -> None:
        async with client_for("aiohttp", fake, served, **options) as client:
            calls = [asyncio.create_task(client.read("p1")) for _ in range(8)]
            await asyncio.sleep(0.8)
            assert client.breaker_state == "open"
            sent_while_down = len(fake.log)
            fake.down = False
            results = await asyncio.gather(*calls)
            assert all(r["id"] == "p1" for r in results)
            assert client.breaker_state == "closed"
            # Open, it let one probe through per 0.1 s, and failed probes used up nobody's
            # attempts (or some calls would have failed).
            assert sent_while_down < 8 + 12

    run(scenario)


def test_breaker_gives_up_after_the_deadline_for_every_caller(
    fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    fake.down = True
    options = {
        "breaker_failure_threshold": 3,
        "deadline_seconds": 0.5,
        "max_attempts": 50,
        "concurrency": 4,
    }

    async def scenario() -> None:
        async with client_for("asgi", fake, served, **options) as client:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.read("p1") for _ in range(10)), return_exceptions=True
            )
            assert all(isinstance(r, FhirUnavailable) for r in results), results
            assert time.monotonic() - started < 1.5
            assert client.breaker_state == "gave_up"
            # After the deadline, calls fail at once without sending, even if it came back.
            fake.down = False
            sent = len(fake.log)
            started = time.monotonic()
            with pytest.raises(FhirUnavailable) as exc:
                await client.read("p1")
            assert time.monotonic() - started < 0.05 and len(fake.log) == sent
            assert exc.value.status == 503 and "unavailable" in str(exc.value)

    run(scenario)


# --- the rate limiter ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["asgi", "aiohttp"])
def test_the_rate_stays_within_10_percent_of_the_limit(
    mode: str, fake: FakeFhir, served: tuple[FakeFhir, str]
) -> None:
    # ~1 s in-process; ~2 s over loopback, where a busy CPU delays and bunches arrivals by tens
    # of milliseconds: measured over 2 s they stay well inside the 10 %.
    rate, burst = 200.0, 20
    n = 220 if mode == "asgi" else 420

    async def scenario() -> None:
        async with client_for(mode, fake, served, rate_limit=rate, concurrency=32) as client:
            await asyncio.gather(*(client.read("p1") for _ in range(n)))

    run(scenario)
    times = sorted(s.at for s in fake.log)
    assert len(times) == n
    # The first `burst` go at once (over loopback, behind the opening of their connections);
    # from the next one on, one every 1/rate.
    steady = (n - burst - 1) / (times[-1] - times[burst])
    assert rate * 0.9 <= steady <= rate * 1.1, steady
    if mode != "asgi":
        return  # over loopback, a busy CPU bunches arrivals at the server thread
    # No window of 0.5 s holds more than its share plus the burst.
    for i, t in enumerate(times):
        inside = sum(1 for u in times[i:] if u - t < 0.5)
        assert inside <= rate * 0.5 * 1.1 + burst


def test_an_unlimited_limiter_does_not_wait() -> None:
    async def scenario() -> float:
        limiter = RateLimiter(0)
        started = time.monotonic()
        for _ in range(1000):
            await limiter.acquire()
        return time.monotonic() - started

    assert run(scenario) < 0.1


def test_the_burst_is_a_tenth_of_the_rate_and_at_least_one() -> None:
    assert RateLimiter(200).burst == 20
    assert RateLimiter(5).burst == 1


# --- retry timing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 1 ", 1.0), ("0.5", 0.5), ("", 0.0), (None, 0.0), ("soon", 0.0), ("-4", 0.0)],
)
def test_retry_after_seconds(header: str | None, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0


def test_backoff_is_full_jitter_under_the_cap_with_retry_after_as_floor() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, 0.25, 20.0, rng=rng) for _ in range(500)]
    assert 0 <= min(delays) < 0.2 and 1.8 < max(delays) <= 2.0  # uniform(0, 0.25 * 2**3)
    assert all(backoff_delay(30, 0.25, 20.0, rng=rng) <= 20.0 for _ in range(100))
    assert all(backoff_delay(0, 0.25, 20.0, floor=1.0, rng=rng) >= 1.0 for _ in range(100))
    assert backoff_delay(10_000, 0.25, 20.0, rng=rng) <= 20.0  # no overflow


# --- settings and secrets ------------------------------------------------------------------


def test_the_api_key_is_never_in_repr() -> None:
    shown = repr(FhirSettings(base_url="http://x/fhir", api_key="s3cr3t"))
    assert "s3cr3t" not in shown and "api_key=SecretStr('**********')" in shown
    assert "api_key=None" in repr(FhirSettings(base_url="http://x/fhir"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "x"}, "base_url"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"deadline_seconds": float("nan")}, "deadline_seconds"),
        ({"transport": "curl"}, "transport"),
    ],
)
def test_invalid_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FhirSettings(**{"base_url": "http://x/fhir", **options})


def test_invalid_ids_are_refused_without_a_request() -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    async def scenario() -> None:
        transport = httpx.MockTransport(answer)
        async with FhirClient(settings("http://fhir.test"), transport=transport) as client:
            with pytest.raises(FhirPermanentError):
                await client.read("../Patient?identifier=x")
            with pytest.raises(FhirPermanentError):
                await client.update({"resourceType": "Patient"}, version_id=None)

    run(scenario)
    assert calls == []
