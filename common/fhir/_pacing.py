"""Pacing requests: a token bucket shared by all senders, and a circuit breaker.

Both are shared by every concurrent request of one client, so a 429's ``Retry-After`` or an
outage slows *all* senders, not just the one that saw it — otherwise 64 workers would each
discover the problem separately and keep hammering.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from common.fhir._errors import FhirUnavailable


class RateLimiter:
    """Token bucket at ``rate`` requests/s with a small burst; ``pause_until`` holds everyone."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        # A burst of ~0.1 s worth: enough to keep a pipeline full, too little to trip the
        # server's own bucket when our clocks disagree.
        self.capacity = max(1.0, rate * 0.1)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause_until(self, moment: float) -> None:
        self.paused_until = max(self.paused_until, moment)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                if self.rate <= 0:
                    return
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive transient failures.

    While open, callers wait instead of sending; every ``probe_seconds`` one probe is let
    through, and its success closes the breaker for everyone. Once it has been open for longer
    than ``deadline`` the client gives up for good (``FhirUnavailable`` at once for every
    caller): the run is ending, its remaining rows become ``deferred`` and are replayed later.
    """

    def __init__(self, threshold: int, probe_seconds: float, deadline: float) -> None:
        self.threshold = threshold
        self.probe_seconds = probe_seconds
        self.deadline = deadline
        self.failures = 0
        self.opened_at: float | None = None
        self.next_probe = 0.0
        self.gave_up = False
        self._changed = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    async def admit(self) -> None:
        """Return when a request may be sent; raise ``FhirUnavailable`` after the deadline."""
        while True:
            if self.gave_up:
                raise FhirUnavailable("FHIR server", 503, 0)
            if self.opened_at is None:
                return
            now = time.monotonic()
            if now - self.opened_at > self.deadline:
                self.gave_up = True
                self._changed.set()
                continue
            if now >= self.next_probe:
                self.next_probe = now + self.probe_seconds
                return  # this caller is the probe
            self._changed.clear()
            wait = min(self.next_probe - now, self.opened_at + self.deadline - now) + 0.001
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(wait, 0.001))

    def success(self) -> None:
        self.failures = 0
        if self.opened_at is not None:
            self.opened_at = None
            self._changed.set()

    def failure(self) -> None:
        self.failures += 1
        if self.opened_at is None and self.failures >= self.threshold:
            self.opened_at = time.monotonic()
            self.next_probe = self.opened_at + self.probe_seconds
