"""How many requests one client keeps in flight: AIMD on 429s, shared by every sender.

The window works like TCP Reno's congestion window, with a 429 for a lost packet:

- a 429 (the server's own, or a batch entry's) halves the threshold and restarts the window at
  one request: after the shared ``Retry-After`` pause, one request goes first, then two, four …
  (slow start, one more per success) up to the threshold, then one more per window's worth of
  successes (additive increase) up to ``maximum``;
- only the first 429 of requests admitted before a decrease counts: the other requests of that
  window ran into the same full bucket, and halving again for each would collapse the window;
- waiting senders are admitted in order, a resent request (``first=True``) ahead of new ones,
  so after a pause they go one by one as the window opens instead of all at once.

Without 429s the window stays at ``maximum`` and this is a plain FIFO semaphore.
"""

from __future__ import annotations

import asyncio
from collections import deque

#: A 429 multiplies the threshold by this.
DECREASE = 0.5


class AdaptiveConcurrency:
    """At most ``limit`` callers hold a slot; ``limit`` adapts between 1 and ``maximum``."""

    def __init__(self, maximum: int) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        self._window = float(maximum)
        self._threshold = float(maximum)
        self._epoch = 0  # bumped by each decrease: slots granted before it are of an older window
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[int]] = deque()
        #: Decreases so far.
        self.decreases = 0

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return max(1, int(self._window))

    @property
    def target(self) -> int:
        """Where slow start ends: the window a 429 halved (``maximum`` before any)."""
        return max(1, int(self._threshold))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self, *, first: bool = False) -> int:
        """Wait for a slot (``first``: ahead of every waiter); the window's epoch it belongs to."""
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return self._epoch
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: hand the slot on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_flight -= 1
        self._admit()

    def throttled(self, epoch: int) -> bool:
        """A request admitted in ``epoch`` got a 429: decrease, once per window. True if it did."""
        if epoch != self._epoch:
            return False
        self._epoch += 1
        self.decreases += 1
        self._threshold = max(1.0, self._window * DECREASE)
        self._window = 1.0
        return True

    def succeeded(self) -> None:
        """A request was answered without a 429: widen the window (slow start, then additive)."""
        if self._window >= self.maximum:
            return
        step = 1.0 if self._window < self._threshold else 1.0 / self._window
        self._window = min(float(self.maximum), self._window + step)
        self._admit()

    def _admit(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._epoch)
                self._in_flight += 1
