"""The async FHIR client: pooled connections, pacing, retries and the breaker around httpx.

Every attempt of every request goes: breaker (wait while the server is down) → concurrency
slot → rate limiter → send. Failures are sorted into the error hierarchy of ``_errors``:

- 2xx: success.
- 409/412 on a PUT: ``FhirConflict`` at once (the caller re-reads; retrying can't help).
- 429: every sender is paused for ``Retry-After`` (1 s if absent), then this one retries.
- 5xx, 408, timeouts, connection errors: retried with jittered backoff, counted by the breaker;
  ``FhirTransientError`` once ``max_attempts`` are spent.
- any other status: ``FhirPermanentError`` (``FhirAuthError`` for 401/403) at once.

Nothing this module raises or reports names a URL, a query string (it holds the NIK) or the
API key; the OperationOutcome text it quotes is redacted of long digit runs and the key.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import orjson

from common.fhir._breaker import CircuitBreaker
from common.fhir._errors import (
    FhirAuthError,
    FhirConflict,
    FhirPermanentError,
    FhirTransientError,
)
from common.fhir._ratelimit import RateLimiter
from common.fhir._retry import backoff_delay, parse_retry_after
from common.fhir._settings import FhirSettings

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
FHIR_JSON = "application/fhir+json"

Resource = dict[str, Any]
#: ``on_retry(method, http_status or 0, attempt)``: called before each retry's wait.
RetryHook = Callable[[str, int, int], None]

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_LONG_DIGITS = re.compile(r"\d{8,}")  # NIKs (16 digits), phone numbers
_MAX_PAGES = 100
#: Pause for every sender after a 429 that carries no usable Retry-After.
_DEFAULT_429_PAUSE = 1.0


@dataclass
class RequestStats:
    """What the client sent and how it went, per attempt."""

    #: ``"GET 200"``, ``"PUT 412"``, ``"GET 0"`` (no response) … per attempt.
    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    #: 429 answers seen.
    rate_limited: int = 0
    #: Round-trip time of every attempt, failed ones included.
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        """The nearest-rank ``p``-th percentile of ``latencies_ms`` (0 when empty)."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = math.ceil(min(max(p, 0.0), 100.0) / 100 * len(ordered))
        return ordered[max(rank, 1) - 1]


def diagnostics(response: httpx.Response, *, secret: str | None = None) -> str:
    """The text of an OperationOutcome body (``issue[].diagnostics`` / ``details.text``).

    Runs of 8+ digits (a NIK, a phone number the server echoed) and ``secret`` are masked.
    """
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts: list[str] = []
    for issue in body.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        for text in (
            issue.get("diagnostics"),
            details.get("text") if isinstance(details, dict) else None,
        ):
            if isinstance(text, str) and text.strip() and text.strip() not in texts:
                texts.append(text.strip())
    return redact("; ".join(texts), secret)


def redact(text: str, secret: str | None = None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return _LONG_DIGITS.sub(lambda m: "*" * len(m.group()), text)


class FhirClient:
    """Patient search, read and conditional update against one FHIR R4 base.

    Use as ``async with FhirClient(settings) as client``. Every request carries ``x-api-key``
    (when set) and ``Accept: application/fhir+json``, waits for the breaker, a concurrency slot
    and the rate limiter, and is retried while the failure is transient.

    ``transport`` replaces the network (tests pass ``httpx.MockTransport``); otherwise
    ``settings.transport`` picks httpx-aiohttp's transport or httpx's own connection pool.
    """

    def __init__(
        self,
        settings: FhirSettings,
        *,
        on_retry: RetryHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.stats = RequestStats()
        self._on_retry = on_retry
        self._rng = rng or random.Random()
        self._limiter = RateLimiter(settings.rate_limit)
        self._breaker = CircuitBreaker(
            settings.breaker_failure_threshold,
            settings.breaker_probe_seconds,
            settings.deadline_seconds,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._base = httpx.URL(settings.base_url.rstrip("/") + "/")
        self._network_errors: tuple[type[BaseException], ...] = (httpx.RequestError, OSError)
        headers = {"Accept": FHIR_JSON}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        options: dict[str, Any] = {
            "base_url": self._base,
            "headers": headers,
            "timeout": httpx.Timeout(settings.timeout_seconds),
            "limits": httpx.Limits(
                max_connections=settings.concurrency,
                max_keepalive_connections=settings.concurrency,
            ),
            "follow_redirects": False,  # a redirect could carry x-api-key to another host
        }
        if transport is not None:
            self._http = httpx.AsyncClient(transport=transport, **options)
        elif settings.transport == "aiohttp":
            import aiohttp
            from httpx_aiohttp import HttpxAiohttpClient

            # httpx's API on aiohttp's connection pool (httpx's own pool stalls at high
            # concurrency: encode/httpx#3215). Errors its transport does not map, pass raw.
            self._network_errors += (aiohttp.ClientError,)
            self._http = HttpxAiohttpClient(**options)
        else:
            self._http = httpx.AsyncClient(**options)

    async def __aenter__(self) -> FhirClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def breaker_state(self) -> str:
        """``"closed"``, ``"open"`` or ``"gave_up"`` (open past the deadline)."""
        return self._breaker.state.value

    async def search_by_nik(self, nik: str) -> list[Resource]:
        """The Patients carrying this NIK: ``entry[].resource`` of the searchset, every page."""
        what = "GET Patient search"
        response = await self._send(
            "GET", "Patient", what, params={"identifier": f"{NIK_SYSTEM}|{nik}"}
        )
        seen: set[str] = set()
        patients: list[Resource] = []
        for _ in range(_MAX_PAGES):
            bundle = self._json(response, what)
            if bundle.get("resourceType") != "Bundle":
                raise FhirPermanentError(what, response.status_code, "the answer is not a Bundle")
            patients += _matches(bundle)
            following = self._next_page(bundle, what)
            if following is None or str(following) in seen:
                return patients
            seen.add(str(following))
            response = await self._send("GET", following, what)
        raise FhirPermanentError(what, response.status_code, f"more than {_MAX_PAGES} pages")

    async def read(self, patient_id: str) -> Resource:
        what = "GET Patient read"
        response = await self._send("GET", f"Patient/{_checked_id(patient_id, what)}", what)
        return self._json(response, what)

    async def update(self, resource: Resource, *, version_id: str | None) -> Resource:
        """PUT the Patient; with ``version_id``, only if the server still holds that version.

        Returns the stored resource (the server's answer; if it sent no body, ``resource`` with
        ``meta.versionId`` taken from the ETag). A stale version raises ``FhirConflict``.
        """
        what = "PUT Patient update"
        patient_id = _checked_id(resource.get("id"), what)
        headers = {"Content-Type": FHIR_JSON, "Prefer": "return=representation"}
        if version_id is not None:
            headers["If-Match"] = (
                version_id if version_id.startswith(('W/"', '"')) else f'W/"{version_id}"'
            )
        response = await self._send(
            "PUT",
            f"Patient/{patient_id}",
            what,
            content=orjson.dumps(resource),
            headers=headers,
        )
        if response.content.strip():
            return self._json(response, what)
        stored = dict(resource)
        version = _etag_version(response.headers.get("ETag"))
        if version is not None:
            stored["meta"] = {**(resource.get("meta") or {}), "versionId": version}
        return stored

    # --- internals -------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str | httpx.URL,
        what: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        settings = self.settings
        attempts = 0  # requests sent for this call
        counted = 0  # those that count against max_attempts (failed probes don't)
        while True:
            probe = await self._breaker.admit(what, attempts)
            detail = ""
            async with self._slots:
                await self._limiter.acquire()
                attempts += 1
                started = time.perf_counter()
                try:
                    response: httpx.Response | None = await self._http.request(
                        method, url, params=params, content=content, headers=headers
                    )
                except self._network_errors as exc:
                    response = None
                    detail = type(exc).__name__
                self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            status = 0 if response is None else response.status_code
            self.stats.requests[f"{method} {status}"] += 1

            retry_after = 0.0
            if response is None or status == 408 or status >= 500:
                self._breaker.record_failure(status)
                if response is not None:
                    retry_after = self._retry_after(response)
            elif status == 429:
                # The server is up, just busy: hold every sender; not an outage.
                self.stats.rate_limited += 1
                retry_after = self._retry_after(response) or min(
                    _DEFAULT_429_PAUSE, settings.backoff_cap_seconds
                )
                self._limiter.pause_for(retry_after)
            else:
                assert response is not None
                self._breaker.record_success()
                if status < 300:
                    return response
                if method == "PUT" and status in (409, 412):
                    raise FhirConflict(what, status)
                if status < 400:
                    raise FhirPermanentError(what, status, "unexpected redirect; check base_url")
                error = FhirAuthError if status in (401, 403) else FhirPermanentError
                raise error(what, status, diagnostics(response, secret=settings.api_key))

            if not probe:
                counted += 1
            if counted >= settings.max_attempts:
                raise FhirTransientError(what, status, attempts, detail=detail)
            self.stats.retries += 1
            if self._on_retry is not None:
                self._on_retry(method, status, attempts)
            await asyncio.sleep(
                backoff_delay(
                    counted - 1,
                    settings.backoff_base_seconds,
                    settings.backoff_cap_seconds,
                    floor=retry_after,
                    rng=self._rng,
                )
            )

    def _retry_after(self, response: httpx.Response) -> float:
        # Honoured, but never past the deadline: a server asking for an hour is down.
        seconds = parse_retry_after(response.headers.get("Retry-After"))
        return min(seconds, self.settings.deadline_seconds)

    def _json(self, response: httpx.Response, what: str) -> Resource:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise FhirPermanentError(what, response.status_code, "the answer is not a JSON object")
        return body

    def _next_page(self, bundle: Resource, what: str) -> httpx.URL | None:
        for link in bundle.get("link") or ():
            if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
                url = self._base.join(str(link["url"]))
                if (url.scheme, url.host, url.port) != (
                    self._base.scheme,
                    self._base.host,
                    self._base.port,
                ):
                    # Following it would hand our x-api-key to another origin.
                    raise FhirPermanentError(what, 200, "next page link leaves the FHIR server")
                return url
        return None


def _matches(bundle: Resource) -> list[Resource]:
    """The Patients of a searchset page (``_include``d and ``outcome`` entries left out)."""
    found: list[Resource] = []
    for entry in bundle.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        search = entry.get("search")
        mode = search.get("mode", "match") if isinstance(search, dict) else "match"
        if (
            isinstance(resource, dict)
            and resource.get("resourceType") == "Patient"
            and mode == "match"
        ):
            found.append(resource)
    return found


def _checked_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _FHIR_ID.fullmatch(value):
        raise FhirPermanentError(what, 0, "not a valid FHIR resource id")
    return value


def _etag_version(etag: str | None) -> str | None:
    """``W/"3"`` → ``"3"``."""
    if not etag:
        return None
    value = etag.strip().removeprefix("W/").strip('"')
    return value or None
