"""A token bucket shared by every sender of one client, with a pause for ``Retry-After``.

Implemented as GCRA (the "virtual scheduling" form of a token bucket): each caller reserves the
next free slot on a timeline advancing ``1/rate`` per request and sleeps until it, so there is
no lock to queue on and no thundering herd when tokens refill. A bucket of ``burst`` tokens
means up to ``burst`` requests may go at once after an idle spell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def default_burst(rate: float) -> float:
    """About 0.1 s worth of requests, at least one.

    Enough to refill a pipeline after a lull, too little to empty the server's own bucket
    (which is typically sized to a second or more) when our clocks and its disagree.
    """
    return max(1.0, rate * 0.1)


class RateLimiter:
    """At most ``rate`` acquisitions per second (0 = unlimited), bursts of up to ``burst``.

    ``pause_until(moment)`` holds every caller — those already waiting for a slot included —
    until ``moment`` (a ``clock()`` reading), then resumes at ``rate`` without a burst: one
    sender's 429 slows all of them instead of each discovering the limit on its own.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        self.rate = rate
        self.burst = default_burst(rate) if burst is None else max(1.0, burst)
        self._clock = clock
        self._interval = 1.0 / rate if rate > 0 else 0.0
        # Slots may be this far ahead of the clock and still go at once: the burst.
        self._tolerance = (self.burst - 1.0) * self._interval
        self._next_slot = 0.0  # GCRA's "theoretical arrival time"
        self._paused_until = 0.0
        self._pauses = 0  # bumped by each pause: reservations made before it are void

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def pause_until(self, moment: float) -> None:
        """Hold every caller until ``moment``; a pause only ever extends an earlier one."""
        if moment <= self._paused_until:
            return
        self._paused_until = moment
        self._pauses += 1
        # Resume at the rate from `moment`, no burst: the server's bucket has just run dry.
        self._next_slot = moment + self._tolerance

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock() + seconds)

    async def acquire(self) -> None:
        """Wait until this caller may send one request."""
        while True:
            now = self._clock()
            if now < self._paused_until:
                await asyncio.sleep(self._paused_until - now)
                continue
            if self._interval == 0.0:
                return
            pauses = self._pauses
            due = max(self._next_slot, now)
            self._next_slot = due + self._interval
            slot = due - self._tolerance  # in the past while the bucket still holds tokens
            if slot <= now:
                return
            await asyncio.sleep(slot - now)
            if self._pauses == pauses:
                return
            # A pause arrived while we waited: our slot is void, queue again behind it.
