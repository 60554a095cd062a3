"""The async FHIR client: pooled connections, pacing, retries and the breaker around httpx."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import orjson

from common.fhir._errors import (
    FhirAuthError,
    FhirConflict,
    FhirPermanentError,
    FhirTransientError,
)
from common.fhir._pacing import CircuitBreaker, RateLimiter
from common.fhir._settings import FhirSettings

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
FHIR_JSON = "application/fhir+json"
_TRANSIENT = frozenset({408, 429})

Resource = dict[str, Any]
RetryHook = Callable[[str, int, int], None]


@dataclass
class RequestStats:
    requests: Counter[str] = field(default_factory=Counter)  # "GET 200", "PUT 412", "GET 0" …
    retries: int = 0
    rate_limited: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float = 0.0) -> float:
    """Exponential backoff with full jitter; a server's ``Retry-After`` is the floor."""
    return max(retry_after, random.uniform(0, min(cap, base * 2 ** (attempt - 1))))


def retry_after_seconds(value: str | None) -> float:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); 0 when absent or unreadable."""
    if not value:
        return 0.0
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, moment.timestamp() - time.time())


def diagnostics(response: httpx.Response) -> str:
    """The text of an OperationOutcome body, if the server sent one."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in body.get("issue") or ():
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                texts.append(str(text))
    return "; ".join(texts)


class FhirClient:
    """Patient search, read and conditional update against one FHIR R4 base.

    Use as ``async with FhirClient(settings) as client``. Every request carries ``x-api-key``,
    passes the breaker and the rate limiter, and is retried when the failure is transient.
    """

    def __init__(
        self,
        settings: FhirSettings,
        *,
        on_retry: RetryHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.stats = RequestStats()
        self._on_retry = on_retry
        self._limiter = RateLimiter(settings.rate_limit)
        self._breaker = CircuitBreaker(
            settings.breaker_failure_threshold,
            settings.breaker_probe_seconds,
            settings.deadline_seconds,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        limits = httpx.Limits(
            max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
        )
        if transport is None and settings.transport == "aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits)
        headers = {"Accept": FHIR_JSON}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_seconds),
            limits=limits,
            transport=transport,
        )

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def search_by_nik(self, nik: str) -> list[Resource]:
        """Patients carrying this NIK (the ``entry[].resource`` of the searchset)."""
        response = await self._send(
            "GET", "Patient", "GET Patient search", params={"identifier": f"{NIK_SYSTEM}|{nik}"}
        )
        entries: list[Resource] = []
        bundle = orjson.loads(response.content)
        while True:
            entries += [e["resource"] for e in bundle.get("entry") or () if "resource" in e]
            following = [
                link["url"] for link in bundle.get("link") or () if link.get("relation") == "next"
            ]
            if not following:
                return entries
            bundle = orjson.loads(
                (await self._send("GET", following[0], "GET Patient search page")).content
            )

    async def read(self, patient_id: str) -> Resource:
        response = await self._send("GET", f"Patient/{patient_id}", f"GET Patient/{patient_id}")
        resource: Resource = orjson.loads(response.content)
        return resource

    async def update(self, resource: Resource, *, version_id: str | None) -> Resource:
        """PUT the resource; with ``version_id``, only if the server still has that version."""
        headers = {"Content-Type": FHIR_JSON}
        if version_id is not None:
            headers["If-Match"] = f'W/"{version_id}"'
        pid = resource["id"]
        response = await self._send(
            "PUT",
            f"Patient/{pid}",
            f"PUT Patient/{pid}",
            content=orjson.dumps(resource),
            headers=headers,
        )
        stored: Resource = orjson.loads(response.content) if response.content else resource
        return stored

    async def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            await self._breaker.admit()
            await self._limiter.acquire()
            response: httpx.Response | None = None
            async with self._slots:
                started = time.perf_counter()
                try:
                    response = await self._http.request(
                        method, url, params=params, content=content, headers=headers
                    )
                except httpx.TransportError:
                    response = None
                self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            status = response.status_code if response is not None else 0
            self.stats.requests[f"{method} {status}"] += 1
            if response is not None and status < 400:
                self._breaker.success()
                return response
            if response is not None and method == "PUT" and status in (409, 412):
                self._breaker.success()
                raise FhirConflict(f"{what}: HTTP {status} (the patient changed since it was read)")
            if response is not None and status < 500 and status not in _TRANSIENT:
                self._breaker.success()
                error = FhirAuthError if status in (401, 403) else FhirPermanentError
                raise error(what, status, diagnostics(response))
            wait_floor = 0.0
            if status == 429:
                # The server is alive, only busy: hold every sender, don't count an outage.
                self.stats.rate_limited += 1
                wait_floor = retry_after_seconds(
                    response.headers.get("Retry-After") if response else None
                )
                self._limiter.pause_until(time.monotonic() + wait_floor)
            else:
                was_open = self._breaker.is_open
                self._breaker.failure()
                if was_open:
                    attempt -= 1  # a failed probe: while the server is down, rows wait, they don't use up tries
            if attempt >= self.settings.max_attempts:
                raise FhirTransientError(what, status, attempt)
            self.stats.retries += 1
            if self._on_retry is not None:
                self._on_retry(method, status, attempt)
            await asyncio.sleep(
                backoff_seconds(
                    attempt,
                    self.settings.backoff_base_seconds,
                    self.settings.backoff_cap_seconds,
                    wait_floor,
                )
            )
