"""The FHIR registry as phonesync's processes use it: the client with the job's log lines, the
start-up check of the server, and batch mode.

The nightly task, the replay function, ``phonesync replay --via direct`` open it the same way,
so each logs the same ``fhir_retry`` / ``fhir_throttled`` / ``fhir_batch_refused`` lines and
checks the server by the same rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from common.config import Settings
from common.fhir import (
    BatchingRegistry,
    FhirAuthError,
    FhirClient,
    FhirTransientError,
)
from common.runtime import fhir_settings
from common.telemetry import log_event


@dataclass(frozen=True, slots=True)
class Registry:
    """An open registry: the client (its stats, the check) and the calls sync makes on it,
    batched when ``FHIR_BATCH_SIZE`` says so."""

    client: FhirClient
    calls: BatchingRegistry
    throttles: ThrottleLog

    def rows_in_flight(self) -> int:
        """Rows to work on at once so that the client's window carries full Bundles."""
        return self.calls.rows_in_flight(self.client.settings.concurrency)


@asynccontextmanager
async def open_registry(settings: Settings) -> AsyncIterator[Registry]:
    """The registry of ``settings.fhir`` (its secret read now), closed on exit."""
    fhir = fhir_settings(settings)
    throttles = ThrottleLog()
    async with FhirClient(
        fhir, on_retry=log_retry, on_throttle=throttles, on_write_fallback=_log_write_fallback
    ) as client:
        calls = BatchingRegistry(client, fhir.batch_size, on_fallback=_log_batch_refused)
        yield Registry(client, calls, throttles)


async def check_server(client: FhirClient, *, outage_is_fatal: bool = False) -> None:
    """Fail fast on a wrong base URL: ``FhirServerUnfit`` unless ``GET [base]/metadata`` shows
    FHIR R4 with Patient search and the write ``FHIR_WRITE`` asks for (``auto``: update or
    patch).

    Only an answer is a verdict on the URL. Refused credentials, and a server that does not
    answer through the client's retries, are left to the rows with a warning: the rows meet
    them as before (deferred, then replayed), which heals an outage by itself, where a failed
    run would stop the other tasks for good (Cloud Run retries them at once; they would run out
    of retries before task 0's retry finds the registry back). ``outage_is_fatal`` (an
    operator's replay, who is there to try again) raises the ``FhirTransientError`` instead."""
    try:
        capabilities = await client.checked_capabilities()
    except (FhirAuthError, FhirTransientError) as exc:
        if outage_is_fatal and isinstance(exc, FhirTransientError):
            raise
        log_event(
            "fhir_unchecked",
            f"the FHIR server at {client.shown_base_url} could not be checked: {exc}",
            severity=logging.WARNING,
            reason=str(exc),
        )
    else:
        write = capabilities.write_interaction(client.settings.write)
        log_event(
            "fhir_checked",
            f"{client.shown_base_url}: FHIR {capabilities.fhir_version}, Patient search and {write}",
            fhir_version=capabilities.fhir_version,
            batch=capabilities.batch,
            write=write,
        )


def log_retry(method: str, status: int, attempt: int) -> None:
    log_event(
        "fhir_retry",
        f"{method} answered {status or 'no response'}; retrying",
        severity=logging.WARNING,
        method=method,
        http_status=status,
        request_attempt=attempt,  # `attempt` is the task's (Cloud Run's), bound for every line
    )


class ThrottleLog:
    """``fhir_throttled`` warnings: the first narrowing of the window at once, then at most one
    line per ``every`` seconds (a server at its limit narrows it about once per Retry-After)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.count = 0
        self._logged = 0  # narrowings already reported
        self._last: float | None = None

    def __call__(self, limit: int, pause: float) -> None:
        self.count += 1
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        log_event(
            "fhir_throttled",
            f"the FHIR server answered 429: every request paused {pause:g} s, "
            f"then resumed one at a time, up to {limit} in flight",
            severity=logging.WARNING,
            limit=limit,
            pause_seconds=pause,
            narrowings=self.count - self._logged,  # since the last such line
        )
        self._logged = self.count


def _log_batch_refused(reason: str) -> None:
    log_event("fhir_batch_refused", reason, severity=logging.WARNING)


def _log_write_fallback(reason: str) -> None:
    log_event("fhir_write_fallback", reason, severity=logging.WARNING)
