"""The async FHIR client: pooled connections, pacing, retries and the breaker around httpx.

Every attempt of every request goes: breaker (wait while the server is down) → concurrency
slot (an adaptive window, ``_concurrency``) → rate limiter → send. Failures are sorted into the
error hierarchy of ``_errors``:

- 2xx: success.
- 409/412 on a PUT or PATCH: ``FhirConflict`` at once (the caller re-reads; retrying can't
  help). 400/422 on a PATCH: ``FhirPatchRefused`` (a failed ``test`` op, or a refused patch:
  the caller tells them apart, see ``common.fhir._patch.patch_raced``).
- 429: every sender is paused for ``Retry-After`` (1 s if absent) and the window of requests in
  flight is halved (restarting at one); this one is resent ahead of new requests. A 429 uses up
  none of the call's attempts: the server is answering, just asking us to slow down. Only once
  it has answered nothing but 429 for ``deadline_seconds`` (or this call has met 429s for that
  long) does the call fail: ``FhirUnavailable`` / ``FhirTransientError``.
- 5xx, 408, timeouts, connection errors: retried with jittered backoff, counted by the breaker;
  ``FhirTransientError`` once ``max_attempts`` are spent.
- 401: once per call, the credentials are refreshed (a bearer token fetched again) and the
  request resent; otherwise ``FhirAuthError``, as for 403.
- any other status: ``FhirPermanentError`` at once.
- 400/404/405/501 on a batch ``POST [base]``: ``FhirBatchRefused`` at once (no batch here).

A batch Bundle is one request to all of this: retried, paced and counted by the breaker as
one. What its entries answered is sorted by ``common.fhir._batch``; an entry's 429 slows the
client down as a whole-Bundle 429 without ``Retry-After`` does.

Nothing this module raises or reports names a URL (but ``FhirServerUnfit`` the base URL, bare),
a query string (it holds the NIK), the API key, a client secret or a token; the OperationOutcome
text it quotes is redacted of long digit runs and of those.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import orjson

from common.fhir._auth import FhirAuth, make_auth
from common.fhir._breaker import CircuitBreaker
from common.fhir._capabilities import ServerCapabilities, Write, parse_capability_statement
from common.fhir._concurrency import AdaptiveConcurrency
from common.fhir._errors import (
    FhirAuthError,
    FhirBatchRefused,
    FhirConflict,
    FhirError,
    FhirPermanentError,
    FhirServerUnfit,
    FhirTransientError,
    patch_refusal,
)
from common.fhir._outcome import outcome_text, response_text
from common.fhir._patch import JSON_PATCH, PatchOp, patch_body, telecom_patch
from common.fhir._ratelimit import RateLimiter
from common.fhir._settings import FhirSettings
from common.retry import backoff_delay, parse_retry_after, retryable_status

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
FHIR_JSON = "application/fhir+json"

Resource = dict[str, Any]
#: ``on_retry(method, http_status or 0, attempt)``: called before each retry's wait.
RetryHook = Callable[[str, int, int], None]
#: ``on_throttle(limit, pause_seconds)``: a 429 narrowed the window to ``limit`` requests in
#: flight (reached again by slow start after the pause); at most once per window of requests.
ThrottleHook = Callable[[int, float], None]

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_MAX_PAGES = 100
#: Pause for every sender after a 429 that carries no usable Retry-After.
_DEFAULT_429_PAUSE = 1.0
#: How a server without batch answers ``POST [base]`` (bad request, no such endpoint, method
#: not allowed, not implemented).
BATCH_REFUSALS = frozenset({400, 404, 405, 501})


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """One entry of a batch-response: its status, resource and OperationOutcome text."""

    status: int  # 0 when the entry carries no readable status
    resource: Resource | None
    outcome: str = ""
    etag: str | None = None


@dataclass
class RequestStats:
    """What the client sent and how it went, per attempt."""

    #: ``"GET 200"``, ``"PUT 412"``, ``"GET 0"`` (no response) … per attempt.
    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    #: 429 answers seen (requests and batch entries).
    rate_limited: int = 0
    #: Round-trip time of every attempt, failed ones included.
    latencies_ms: list[float] = field(default_factory=list)
    #: Batch entries by ``"GET 200"``, ``"PUT 412"`` … as their entry answers said.
    entries: Counter[str] = field(default_factory=Counter)

    def percentile(self, p: float) -> float:
        """The nearest-rank ``p``-th percentile of ``latencies_ms`` (0 when empty)."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = math.ceil(min(max(p, 0.0), 100.0) / 100 * len(ordered))
        return ordered[max(rank, 1) - 1]


def diagnostics(response: httpx.Response, *, secrets: tuple[str, ...] = ()) -> str:
    """What an error answer says (see ``common.fhir._outcome.response_text``), redacted."""
    return response_text(response.content, response.headers.get("Content-Type"), secrets)


class FhirClient:
    """Patient search, read and conditional update or patch against one FHIR R4 base.

    Use as ``async with FhirClient(settings) as client``. Every request carries the credentials
    of ``settings.auth`` (``x-api-key`` or a bearer token) and ``Accept: application/fhir+json``,
    waits for the breaker, a concurrency slot and the rate limiter, and is retried while the
    failure is transient.

    ``transport`` replaces the network (tests pass ``httpx.MockTransport``); otherwise
    ``settings.transport`` picks httpx-aiohttp's transport or httpx's own connection pool.
    ``auth`` replaces the authentication ``settings.auth`` would build (the client closes it).
    ``rng`` and ``sleep`` draw and wait out the backoff between retries (tests pass their own).
    """

    def __init__(
        self,
        settings: FhirSettings,
        *,
        on_retry: RetryHook | None = None,
        on_throttle: ThrottleHook | None = None,
        on_write_fallback: Callable[[str], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        auth: FhirAuth | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.base_url:
            raise ValueError("FhirClient needs settings.base_url")
        self.settings = settings
        self.stats = RequestStats()
        self._on_retry = on_retry
        self._on_throttle = on_throttle
        self._on_write_fallback = on_write_fallback
        self._refused_put = False  # auto without a CapabilityStatement: a PUT answered 405
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._limiter = RateLimiter(settings.rate_limit)
        self._breaker = CircuitBreaker(
            settings.breaker_failure_threshold,
            settings.breaker_probe_seconds,
            settings.deadline_seconds,
        )
        self._slots = AdaptiveConcurrency(settings.concurrency)
        self._base = httpx.URL(settings.base_url.rstrip("/") + "/")
        self._root = httpx.URL(settings.base_url.rstrip("/"))  # POST [base]: no trailing slash
        self._network_errors: tuple[type[BaseException], ...] = (httpx.RequestError, OSError)
        self._metadata: ServerCapabilities | FhirError | None = None  # its answer, once asked
        self._asking = asyncio.Lock()
        self._auth: FhirAuth = auth or make_auth(settings, transport)
        headers = {"Accept": FHIR_JSON}
        options: dict[str, Any] = {
            "base_url": self._base,
            "headers": headers,
            "timeout": httpx.Timeout(settings.timeout_seconds),
            "limits": httpx.Limits(
                max_connections=settings.concurrency,
                max_keepalive_connections=settings.concurrency,
            ),
            "follow_redirects": False,  # a redirect could carry credentials to another host
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
        try:
            await self._http.__aexit__(exc_type, exc, tb)
        finally:
            await self._auth.aclose()

    async def aclose(self) -> None:
        try:
            await self._http.aclose()
        finally:
            await self._auth.aclose()

    @property
    def concurrency_limit(self) -> int:
        """Requests allowed in flight now: ``settings.concurrency`` unless 429s narrowed it."""
        return self._slots.limit

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
        return await self.searchset_patients(self._json(response, what), what)

    async def searchset_patients(self, bundle: object, what: str) -> list[Resource]:
        """The Patients of a searchset ``bundle`` and of the pages its ``next`` links lead to."""
        seen: set[str] = set()
        patients: list[Resource] = []
        for _ in range(_MAX_PAGES):
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise FhirPermanentError(what, 200, "the answer is not a Bundle")
            patients += _matches(bundle)
            following = self._next_page(bundle, what)
            if following is None or str(following) in seen:
                return patients
            seen.add(str(following))
            bundle = self._json(await self._send("GET", following, what), what)
        raise FhirPermanentError(what, 200, f"more than {_MAX_PAGES} pages")

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
            headers["If-Match"] = if_match(version_id)
        response = await self._send(
            "PUT",
            f"Patient/{patient_id}",
            what,
            content=orjson.dumps(resource),
            headers=headers,
        )
        if response.content.strip():
            return self._json(response, what)
        return stored_as(resource, response.headers.get("ETag"))

    async def patch(
        self,
        patient_id: str,
        document: list[PatchOp],
        *,
        version_id: str | None,
        result: Resource,
    ) -> Resource:
        """PATCH the Patient with a JSON Patch; with ``version_id``, only if the server still
        holds that version (``FhirConflict`` otherwise).

        Returns the stored resource (the server's answer; if it sent no body, ``result`` — what
        the patch makes of the patient — with ``meta.versionId`` taken from the ETag). A 400 or
        422 raises ``FhirPatchRefused`` carrying ``document``.
        """
        what = "PATCH Patient patch"
        headers = {"Content-Type": JSON_PATCH, "Prefer": "return=representation"}
        if version_id is not None:
            headers["If-Match"] = if_match(version_id)
        try:
            response = await self._send(
                "PATCH",
                f"Patient/{_checked_id(patient_id, what)}",
                what,
                content=patch_body(document),
                headers=headers,
            )
        except FhirPermanentError as exc:
            raise patch_refusal(exc, what, document) from None
        if response.content.strip():
            return self._json(response, what)
        return stored_as(result, response.headers.get("ETag"))

    async def write_interaction(self) -> Write:
        """How this client writes a Patient: ``FHIR_WRITE`` when it names one; for ``auto``
        what the CapabilityStatement lists (update before patch). Without a readable
        CapabilityStatement (the start-up check let the run go on), ``update``: as before."""
        if self.settings.write != "auto":
            return self.settings.write
        if self._refused_put:
            return "patch"
        try:
            capabilities = await self.capabilities()
        except FhirError:
            return "update"
        return capabilities.write_interaction() or "update"

    async def write(self, before: Resource, after: Resource, *, version_id: str | None) -> Resource:
        """Make the Patient ``before`` (as read, at ``version_id``) into ``after``: a PUT of
        ``after``, or a JSON Patch of the telecom change (:meth:`write_interaction`)."""
        if await self.write_interaction() == "update":
            try:
                return await self.update(after, version_id=version_id)
            except FhirPermanentError as exc:
                if not self.turns_to_patch(exc):
                    raise
        what = "PATCH Patient patch"
        document = telecom_patch(before, after, self.settings.patch_ops)
        return await self.patch(
            _checked_id(after.get("id"), what), document, version_id=version_id, result=after
        )

    def turns_to_patch(self, exc: FhirPermanentError) -> bool:
        """``auto`` took ``update`` for want of a CapabilityStatement (an outage at start) and
        the server answered the PUT 405 (Method Not Allowed): a registry that only patches. The
        client patches from then on, and says so once through ``on_write_fallback``."""
        if self.settings.write != "auto" or exc.status != 405 or isinstance(exc, FhirAuthError):
            return False
        if not self._refused_put:
            self._refused_put = True
            if self._on_write_fallback is not None:
                self._on_write_fallback(
                    "the FHIR server answered PUT Patient with 405 and FHIR_WRITE is auto: "
                    "writing with JSON Patch from now on"
                )
        return True

    async def batch(self, entries: list[Resource]) -> list[BatchAnswer]:
        """``POST [base]`` a Bundle of type ``batch`` with ``entries``; their answers, in order.

        Sent, retried and paced as one request. Raises ``FhirBatchRefused`` when the server
        refuses batch or answers with anything but a batch-response of as many entries.
        """
        what = "POST batch"
        body = orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries})
        response, epoch = await self._exchange(
            "POST",
            self._root,
            what,
            content=body,
            headers={"Content-Type": FHIR_JSON},
            refusals=BATCH_REFUSALS,
        )
        try:
            bundle = self._json(response, what)
        except FhirPermanentError as exc:
            raise FhirBatchRefused(what, response.status_code, exc.diagnostics) from None
        answered = bundle.get("entry") or []
        if bundle.get("type") != "batch-response" or not isinstance(answered, list):
            raise FhirBatchRefused(what, response.status_code, "the answer is no batch-response")
        if len(answered) != len(entries):
            raise FhirBatchRefused(
                what,
                response.status_code,
                f"the batch-response has {len(answered)} entries for {len(entries)} requests",
            )
        answers = [self._batch_answer(entry) for entry in answered]
        for request, answer in zip(entries, answers, strict=True):
            self.stats.entries[f"{request['request']['method']} {answer.status}"] += 1
        throttled = sum(1 for answer in answers if answer.status == 429)
        if throttled:
            self.stats.rate_limited += throttled
            self._throttle(epoch, self._default_pause())
        return answers

    async def capabilities(self) -> ServerCapabilities:
        """``GET [base]/metadata``: what the server says it supports (fhirVersion, batch …).

        Asked once per client: later calls get the same answer, or the same error, so the
        start-up check and the batch decision share one request.
        """
        async with self._asking:
            if self._metadata is None:
                try:
                    self._metadata = await self._ask_capabilities()
                except FhirError as exc:
                    self._metadata = exc
        if isinstance(self._metadata, FhirError):
            raise self._metadata
        return self._metadata

    async def checked_capabilities(self) -> ServerCapabilities:
        """:meth:`capabilities`, or ``FhirServerUnfit`` unless they show a FHIR R4 server with
        Patient search and the write ``FHIR_WRITE`` asks for (an answer that is not a CapabilityStatement, or a 3xx/4xx
        other than 401/403, included). ``FhirAuthError`` and ``FhirTransientError`` pass as
        they are: they say nothing about what the base URL leads to."""
        try:
            capabilities = await self.capabilities()
        except FhirAuthError:
            raise
        except FhirPermanentError as exc:
            raise FhirServerUnfit(self.shown_base_url, exc.status, exc.diagnostics) from None
        problem = capabilities.unfit_because(self.settings.write)
        if problem is not None:
            raise FhirServerUnfit(self.shown_base_url, 200, problem)
        return capabilities

    @property
    def shown_base_url(self) -> str:
        """The base URL as messages may show it: no user, password, query or fragment."""
        return str(self._root.copy_with(username=None, password=None, query=None, fragment=None))

    async def _ask_capabilities(self) -> ServerCapabilities:
        what = "GET metadata"
        response = await self._send("GET", "metadata", what)
        try:
            return parse_capability_statement(self._json(response, what))
        except ValueError as exc:
            raise FhirPermanentError(what, response.status_code, str(exc)) from None

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
        response, _ = await self._exchange(
            method, url, what, params=params, content=content, headers=headers
        )
        return response

    async def _exchange(
        self,
        method: str,
        url: str | httpx.URL,
        what: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        refusals: frozenset[int] = frozenset(),
    ) -> tuple[httpx.Response, int]:
        """One call, every attempt of it: the answer and the concurrency epoch it was sent in.

        ``refusals`` are statuses raised as FhirBatchRefused.
        """
        settings = self.settings
        attempts = 0  # requests sent for this call
        counted = 0  # those that count against max_attempts (failed probes and 429s don't)
        refreshed = False  # credentials renewed once after a 401
        throttled_at: float | None = None  # this call's first 429
        while True:
            probe = await self._breaker.admit(what, attempts)
            detail = ""
            epoch = await self._slots.acquire(first=throttled_at is not None)
            try:
                await self._limiter.acquire()
                self._breaker.check(what, attempts)  # it may have given up while we waited
                credentials = await self._auth.headers()
                attempts += 1
                started = time.perf_counter()
                try:
                    response: httpx.Response | None = await self._http.request(
                        method,
                        url,
                        params=params,
                        content=content,
                        headers={**(headers or {}), **credentials},
                    )
                except self._network_errors as exc:
                    response = None
                    detail = type(exc).__name__
                self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            finally:
                self._slots.release()
            status = 0 if response is None else response.status_code
            self.stats.requests[f"{method} {status}"] += 1

            retry_after = 0.0
            if status in refusals:
                assert response is not None
                self._breaker.record_success()  # the server answered: it is up
                raise FhirBatchRefused(
                    what, status, diagnostics(response, secrets=self._auth.secrets())
                )
            if status == 429:
                assert response is not None
                # The server is up, just busy: slow every sender down; no attempt used up.
                self.stats.rate_limited += 1
                self._breaker.record_throttled()
                self._breaker.check(what, attempts)  # nothing but 429s past the deadline
                self._throttle(epoch, self._retry_after(response) or self._default_pause())
                throttled_at = self.rate_limited_since(throttled_at, what, attempts)
                self.stats.retries += 1
                if self._on_retry is not None:  # the job's fhir_retry line (an alert counts it)
                    self._on_retry(method, status, attempts)
                continue  # after the pause, ahead of new requests
            if retryable_status(None if response is None else status):
                self._breaker.record_failure(status)
                if response is not None:
                    retry_after = self._retry_after(response)
                    detail = diagnostics(response, secrets=self._auth.secrets())
            else:
                assert response is not None
                self._breaker.record_success()
                self._slots.succeeded()
                if status < 300:
                    return response, epoch
                if method in ("PUT", "PATCH") and status in (409, 412):
                    raise FhirConflict(what, status)
                if status < 400:
                    raise FhirPermanentError(what, status, "unexpected redirect; check base_url")
                if status == 401 and not refreshed and await self._auth.refresh(credentials):
                    refreshed = True  # a revoked or early-expired token: one fresh try
                    continue
                error = FhirAuthError if status in (401, 403) else FhirPermanentError
                raise error(what, status, diagnostics(response, secrets=self._auth.secrets()))

            if not probe:
                counted += 1
            if counted >= settings.max_attempts:
                raise FhirTransientError(what, status, attempts, detail=detail)
            await self.retry_pause(method, status, attempts, counted - 1, floor=retry_after)

    async def retry_pause(
        self, method: str, status: int, attempts: int, retry: int, *, floor: float = 0.0
    ) -> None:
        """Count a retry, tell ``on_retry``, and wait the jittered backoff of retry ``retry``."""
        self.stats.retries += 1
        if self._on_retry is not None:
            self._on_retry(method, status, attempts)
        settings = self.settings
        await self._sleep(
            backoff_delay(
                retry,
                settings.backoff_seconds,
                settings.backoff_cap_seconds,
                floor=floor,
                rng=self._rng,
            )
        )

    def _throttle(self, epoch: int, pause: float) -> None:
        """A 429 for a request sent in ``epoch``: pause every sender, narrow the window."""
        self._limiter.pause_for(pause)
        if self._slots.throttled(epoch) and self._on_throttle is not None:
            self._on_throttle(self._slots.target, pause)

    def rate_limited_since(self, since: float | None, what: str, sent: int) -> float:
        """When a call (or a batch entry) first met a 429, given this new one: ``since``, or
        now for the first. ``FhirTransientError`` once its 429s have lasted past the deadline:
        429s use up no attempt, so the deadline alone bounds them."""
        now = time.monotonic()
        first = now if since is None else since
        if now - first > self.settings.deadline_seconds:
            detail = f"rate limited for {now - first:.0f} s, past the deadline"
            raise FhirTransientError(what, 429, sent, detail=detail)
        return first

    def _default_pause(self) -> float:
        """The pause after a 429 without a usable ``Retry-After``."""
        return min(_DEFAULT_429_PAUSE, self.settings.backoff_cap_seconds)

    def _retry_after(self, response: httpx.Response) -> float:
        # Honoured, but never past the deadline: a server asking for an hour is down.
        return parse_retry_after(
            response.headers.get("Retry-After"), longest=self.settings.deadline_seconds
        )

    def _json(self, response: httpx.Response, what: str) -> Resource:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise FhirPermanentError(what, response.status_code, "the answer is not a JSON object")
        return body

    def _batch_answer(self, entry: object) -> BatchAnswer:
        if not isinstance(entry, dict):
            return BatchAnswer(0, None, "the batch-response entry is not an object")
        response = entry.get("response")
        response = response if isinstance(response, dict) else {}
        resource = entry.get("resource")
        etag = response.get("etag")
        return BatchAnswer(
            status=_status_code(response.get("status")),
            resource=resource if isinstance(resource, dict) else None,
            outcome=outcome_text(response.get("outcome"), secrets=self._auth.secrets()),
            etag=etag if isinstance(etag, str) else None,
        )

    def _next_page(self, bundle: Resource, what: str) -> httpx.URL | None:
        for link in bundle.get("link") or ():
            if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
                url = self._base.join(str(link["url"]))
                if (url.scheme, url.host, url.port) != (
                    self._base.scheme,
                    self._base.host,
                    self._base.port,
                ):
                    # Following it would hand our credentials to another origin.
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


def if_match(version_id: str) -> str:
    """The ``If-Match`` value for a version: ``3`` → ``W/"3"`` (an ETag is kept as given)."""
    return version_id if version_id.startswith(('W/"', '"')) else f'W/"{version_id}"'


def stored_as(resource: Resource, etag: str | None) -> Resource:
    """What an update stored when the server sent no body: ``resource`` at the ETag's version."""
    stored = dict(resource)
    version = _etag_version(etag)
    if version is not None:
        stored["meta"] = {**(resource.get("meta") or {}), "versionId": version}
    return stored


def _status_code(value: object) -> int:
    """A batch entry's ``response.status``: ``"200"`` (Medplum), ``"200 OK"`` (HAPI) → 200."""
    text = str(value).strip() if isinstance(value, str | int) else ""
    code = text.split(" ", 1)[0]
    return int(code) if code.isascii() and code.isdigit() and len(code) == 3 else 0


def _etag_version(etag: str | None) -> str | None:
    """``W/"3"`` → ``"3"``."""
    if not etag:
        return None
    value = etag.strip().removeprefix("W/").strip('"')
    return value or None
