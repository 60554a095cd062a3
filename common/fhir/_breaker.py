"""A circuit breaker shared by every request of one client.

closed ──(``threshold`` consecutive transient failures)──▶ open
open: callers wait (they do not send, and waiting uses up none of their attempts); every
``probe_seconds`` one caller is let through as a probe (half-open). Any answer showing the
server is up — a success, or a definite 4xx refusal — closes the breaker and releases everyone.

After the deadline: once the breaker has been open *continuously* for longer than
``deadline_seconds``, it gives up for good — every waiting and every later caller gets
``FhirUnavailable`` at once, and no more probes are sent. It does not reopen for this client
instance even if the server comes back: by then the run is ending, its remaining rows become
``deferred`` fast and are replayed later, which is cheaper and more predictable than a run that
keeps flapping on a server that has just spent ``deadline_seconds`` down.

A server answering nothing but 429 is up but of no use either: once every answer for longer
than ``deadline_seconds`` has been a 429 (``record_throttled``, no ``record_success`` since),
the breaker gives up the same way, without ever having opened (429s do not open it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from enum import Enum

from common.fhir._errors import FhirUnavailable


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    GAVE_UP = "gave_up"


class CircuitBreaker:
    def __init__(
        self,
        threshold: int,
        probe_seconds: float,
        deadline_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.probe_seconds = probe_seconds
        self.deadline_seconds = deadline_seconds
        self._clock = clock
        self._failures = 0  # consecutive transient failures
        self._last_status = 0  # of the last transient failure, for FhirUnavailable
        self._opened_at: float | None = None
        self._next_probe = 0.0
        self._gave_up_after: float | None = None  # how long it had been open when it gave up
        self._throttled_since: float | None = None  # first of the 429s since the last success
        self._gave_up_throttled = False
        self._closed = asyncio.Event()  # set whenever the breaker closes; replaced on opening
        self._closed.set()
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        if self._gave_up_after is not None:
            return BreakerState.GAVE_UP
        return BreakerState.CLOSED if self._opened_at is None else BreakerState.OPEN

    async def admit(self, what: str, attempts: int) -> bool:
        """Return when a request may be sent: ``True`` if it is the open breaker's probe.

        Raises ``FhirUnavailable`` (naming ``what`` and the caller's ``attempts`` so far) once
        the breaker has been open for longer than the deadline.
        """
        while True:
            self.check(what, attempts)
            if self._opened_at is None:
                return False
            now = self._clock()
            open_for = now - self._opened_at
            if open_for > self.deadline_seconds:
                self._gave_up_after = open_for
                self._closed.set()  # wake every waiter: they all fail now
                continue
            if now >= self._next_probe:
                self._next_probe = now + self.probe_seconds
                return True
            # Sleep until the next probe is due or the deadline passes, unless it closes first.
            wake = min(self._next_probe, self._opened_at + self.deadline_seconds + 1e-3)
            closed = self._closed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), timeout=max(wake - now, 1e-3))

    def check(self, what: str, attempts: int) -> None:
        """Raise ``FhirUnavailable`` if the breaker has given up (for a caller about to send)."""
        if self._gave_up_after is None:
            return
        if self._gave_up_throttled:
            raise FhirUnavailable(
                what, 429, attempts, open_seconds=self._gave_up_after, throttled=True
            )
        raise FhirUnavailable(what, self._last_status, attempts, open_seconds=self._gave_up_after)

    def record_success(self) -> None:
        """The server answered (2xx, or a definite 4xx): reset the count, close if open."""
        self._failures = 0
        self._throttled_since = None
        if self._opened_at is not None and self._gave_up_after is None:
            self._opened_at = None
            self._closed.set()

    def record_throttled(self) -> None:
        """A 429. Gives up once nothing but 429s came for longer than the deadline."""
        now = self._clock()
        if self._throttled_since is None:
            self._throttled_since = now
        elif self._gave_up_after is None and now - self._throttled_since > self.deadline_seconds:
            self._gave_up_after = now - self._throttled_since
            self._gave_up_throttled = True
            self._closed.set()

    def record_failure(self, status: int) -> None:
        """A transient failure (5xx, 408, timeout, no connection); ``status`` 0 for none."""
        self._failures += 1
        self._last_status = status
        if self._opened_at is None and self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._next_probe = self._opened_at + self.probe_seconds
            self._closed = asyncio.Event()
            self.times_opened += 1
