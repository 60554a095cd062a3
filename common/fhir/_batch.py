"""Batch mode: the searches, reads and updates of many rows travel together in batch Bundles.

:class:`BatchingRegistry` offers the per-row calls sync needs (``search_by_nik``, ``read``,
``update``), so a row is decided by the same code in either mode; batching is transport. Each
call queues one Bundle entry and waits for its own answer. The queue is sent as a Bundle when
it holds ``size`` entries, or ``linger_seconds`` after an entry arrived, whichever is first.

What a row sees is what per-row mode would have given it:

- the Bundle is one request to the client: a 429, 5xx or timeout retries it whole with the
  same backoff, breaker and deadline; if that gives up, every row in it gets that error;
- an entry's 2xx is the call's answer; 409/412 on an update or patch is ``FhirConflict`` (the
  row re-reads and decides again); 400/422 on a patch ``FhirPatchRefused``; 401/403
  ``FhirAuthError``; other 4xx ``FhirPermanentError``;
- an entry's 408/5xx is retried in a later Bundle, with backoff, up to ``max_attempts``;
- an entry's 429 slows the client down (see ``FhirClient.batch``) and is resent in a later
  Bundle without using up an attempt, until it has met 429s for ``deadline_seconds``;
- a server that refuses batch switches this registry to one request per call, with one
  warning, and the waiting calls are sent that way.

A patch travels as FHIR R4 says a batch carries one: ``request.method`` PATCH and the JSON Patch
as a ``Binary`` resource (``contentType`` application/json-patch+json, base64 ``data``); what
Medplum's router reads. Two writes of one patient never share a Bundle: Medplum refuses such
a Bundle whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from common.fhir._client import (
    NIK_SYSTEM,
    BatchAnswer,
    FhirClient,
    Resource,
    _checked_id,
    if_match,
    stored_as,
)
from common.fhir._errors import (
    FhirAuthError,
    FhirBatchRefused,
    FhirConflict,
    FhirError,
    FhirPermanentError,
    FhirTransientError,
    patch_refusal,
)
from common.fhir._patch import as_binary, telecom_patch
from common.retry import retryable_status

#: Entries per Bundle when ``FHIR_BATCH_SIZE`` is not set and the server lists ``batch``
#: (the best of bench.sync_bench's runs; see docs/performance.md).
DEFAULT_BATCH_SIZE = 50
#: How long a partly filled Bundle waits for more entries.
DEFAULT_LINGER_SECONDS = 0.005

#: ``on_fallback(reason)``: called once when the server refuses batch.
FallbackHook = Callable[[str], None]


class _PerRow(Exception):
    """This call must go as its own request: batch is off, or the server refused it."""


@dataclass(slots=True)
class _Pending:
    entry: Resource
    future: asyncio.Future[BatchAnswer]
    #: ``Patient/{id}`` of an update (at most one per Bundle), else None.
    target: str | None


class BatchingRegistry:
    """Patient search, read and update for sync, sent in batch Bundles of up to ``size``.

    ``size`` 0 sends every call as its own request (today's per-row mode); ``None`` asks the
    server's CapabilityStatement once, on the first call: ``DEFAULT_BATCH_SIZE`` if it lists
    ``batch``, else 0.
    """

    def __init__(
        self,
        client: FhirClient,
        size: int | None,
        *,
        linger_seconds: float = DEFAULT_LINGER_SECONDS,
        on_fallback: FallbackHook | None = None,
    ) -> None:
        self._client = client
        self._size = size
        self._linger = linger_seconds
        self._on_fallback = on_fallback
        self._queue: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._deciding = asyncio.Lock()
        #: Why batch was given up (the refusal), once it was.
        self.fallback_reason: str | None = None

    @property
    def size(self) -> int | None:
        """Entries per Bundle: 0 per-row, None not yet decided (auto)."""
        return self._size

    def rows_in_flight(self, concurrency: int) -> int:
        """Rows to work on at once so that ``concurrency`` requests carry full Bundles."""
        size = DEFAULT_BATCH_SIZE if self._size is None else self._size
        return concurrency * max(1, size)

    # --- the calls sync makes -------------------------------------------------------------

    async def search_by_nik(self, nik: str) -> list[Resource]:
        what = "GET Patient search"
        url = "Patient?" + urlencode({"identifier": f"{NIK_SYSTEM}|{nik}"})
        try:
            answer = await self._call({"request": {"method": "GET", "url": url}}, what)
        except _PerRow:
            return await self._client.search_by_nik(nik)
        return await self._client.searchset_patients(answer.resource, what)

    async def read(self, patient_id: str) -> Resource:
        what = "GET Patient read"
        url = f"Patient/{_checked_id(patient_id, what)}"
        try:
            answer = await self._call({"request": {"method": "GET", "url": url}}, what)
        except _PerRow:
            return await self._client.read(patient_id)
        if answer.resource is None:
            raise FhirPermanentError(what, answer.status, "the entry carries no resource")
        return answer.resource

    async def update(self, resource: Resource, *, version_id: str | None) -> Resource:
        what = "PUT Patient update"
        url = f"Patient/{_checked_id(resource.get('id'), what)}"
        request: dict[str, str] = {"method": "PUT", "url": url}
        if version_id is not None:
            request["ifMatch"] = if_match(version_id)
        try:
            answer = await self._call({"resource": resource, "request": request}, what, url)
        except _PerRow:
            return await self._client.update(resource, version_id=version_id)
        if answer.resource is not None:
            return answer.resource
        return stored_as(resource, answer.etag)

    async def write(self, before: Resource, after: Resource, *, version_id: str | None) -> Resource:
        """``FhirClient.write`` in a batch entry: a PUT of ``after`` or a PATCH ``Binary``."""
        if await self._client.write_interaction() == "update":
            try:
                return await self.update(after, version_id=version_id)
            except FhirPermanentError as exc:
                if not self._client.turns_to_patch(exc):
                    raise
        what = "PATCH Patient patch"
        patient_id = _checked_id(after.get("id"), what)
        document = telecom_patch(before, after, self._client.settings.patch_ops)
        url = f"Patient/{patient_id}"
        request: dict[str, str] = {"method": "PATCH", "url": url}
        if version_id is not None:
            request["ifMatch"] = if_match(version_id)
        try:
            answer = await self._call(
                {"resource": as_binary(document), "request": request}, what, url
            )
        except _PerRow:
            return await self._client.patch(
                patient_id, document, version_id=version_id, result=after
            )
        except FhirPermanentError as exc:
            raise patch_refusal(exc, what, document) from None
        if answer.resource is not None:
            return answer.resource
        return stored_as(after, answer.etag)

    # --- one entry, all its attempts -------------------------------------------------------

    async def _call(self, entry: Resource, what: str, target: str | None = None) -> BatchAnswer:
        """The entry's successful answer; raises what per-row mode would, or ``_PerRow``."""
        attempts = 0  # that count against max_attempts: 429s don't
        sent = 0
        throttled_at: float | None = None  # the entry's first 429
        while True:
            if not await self._batching():
                raise _PerRow
            answer = await self._submit(entry, target)
            sent += 1
            status = answer.status
            if 200 <= status < 300:
                return answer
            if status == 429:
                throttled_at = self._client.rate_limited_since(throttled_at, what, sent)
                continue  # the client paused for it: the next Bundle waits
            attempts += 1
            if target is not None and status in (409, 412):
                raise FhirConflict(what, status)
            if status in (401, 403):
                raise FhirAuthError(what, status, answer.outcome)
            if not retryable_status(status):  # 0: the entry carries no readable status
                raise FhirPermanentError(what, status, answer.outcome or "in a batch-response")
            if attempts >= self._client.settings.max_attempts:
                raise FhirTransientError(what, status, attempts, detail="batch entry")
            await self._client.retry_pause(
                str(entry["request"]["method"]), status, attempts, attempts - 1
            )

    async def _batching(self) -> bool:
        if self._size is None:
            async with self._deciding:
                if self._size is None:
                    self._size = await self._detected_size()
        return self._size > 0

    async def _detected_size(self) -> int:
        try:
            capabilities = await self._client.capabilities()
        except FhirError as exc:
            self._give_up(f"no CapabilityStatement ({exc}); one request per call")
            return 0
        return DEFAULT_BATCH_SIZE if capabilities.batch else 0

    # --- the accumulator --------------------------------------------------------------------

    async def _submit(self, entry: Resource, target: str | None) -> BatchAnswer:
        size = self._size or 0
        if size < 1:
            raise _PerRow
        future: asyncio.Future[BatchAnswer] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(entry, future, target))
        while len(self._queue) >= size:
            self._send(self._take(size))
        if self._queue and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._lingered)
        return await future

    def _lingered(self) -> None:
        self._timer = None
        while self._queue and self._size:
            self._send(self._take(self._size))

    def _take(self, size: int) -> list[_Pending]:
        """Up to ``size`` queued entries, in order, no two updating the same patient."""
        bundle: list[_Pending] = []
        held: list[_Pending] = []
        targets: set[str] = set()
        for index, pending in enumerate(self._queue):
            if len(bundle) == size:
                self._queue = held + self._queue[index:]
                return bundle
            if pending.target is not None and pending.target in targets:
                held.append(pending)
                continue
            bundle.append(pending)
            if pending.target is not None:
                targets.add(pending.target)
        self._queue = held
        return bundle

    def _send(self, bundle: list[_Pending]) -> None:
        task = asyncio.create_task(self._deliver(bundle))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, bundle: list[_Pending]) -> None:
        try:
            answers = await self._client.batch([p.entry for p in bundle])
        except FhirBatchRefused as exc:
            self._give_up(f"the server refused a batch Bundle ({exc}); one request per call")
            self._fail(bundle, _PerRow())
        except asyncio.CancelledError:
            for pending in bundle:
                pending.future.cancel()
            raise
        except Exception as exc:  # every row in the Bundle gets what the Bundle got
            self._fail(bundle, exc)
        else:
            for pending, answer in zip(bundle, answers, strict=True):
                if not pending.future.done():
                    pending.future.set_result(answer)

    def _fail(self, bundle: list[_Pending], exc: BaseException) -> None:
        for pending in bundle:
            if not pending.future.done():
                pending.future.set_exception(exc)

    def _give_up(self, reason: str) -> None:
        self._size = 0
        queued, self._queue = self._queue, []
        self._fail(queued, _PerRow())
        if self.fallback_reason is None:
            self.fallback_reason = reason
            if self._on_fallback is not None:
                self._on_fallback(reason)
