"""A rate-limited FHIR server (429 + Retry-After): the adaptive window."""

from __future__ import annotations

import asyncio

from common.fhir._concurrency import AdaptiveConcurrency

# --- the window ------------------------------------------------------------------------------


def test_a_429_halves_the_target_and_slow_start_climbs_back() -> None:
    window = AdaptiveConcurrency(16)
    assert (window.limit, window.target) == (16, 16)
    assert window.throttled(0)
    assert (window.limit, window.target) == (1, 8)
    assert not window.throttled(0)  # another answer of the same window: no second halving
    for expected in (2, 3, 4, 5, 6, 7, 8):  # slow start: one more per success
        window.succeeded()
        assert window.limit == expected
    for _ in range(4):  # then one more per window's worth of successes (1/8 each)
        window.succeeded()
    assert window.limit == 8
    for _ in range(5):
        window.succeeded()
    assert window.limit == 9
    assert window.throttled(1)  # a request of the new window
    assert (window.limit, window.target) == (1, 4)
    for _ in range(1000):
        window.succeeded()
    assert window.limit == 16  # never past the maximum


def test_waiters_go_in_order_a_resent_request_first_and_no_slot_leaks() -> None:
    async def scenario() -> None:
        window = AdaptiveConcurrency(2)
        await window.acquire()
        await window.acquire()
        window.throttled(0)  # the window is now one request
        order: list[str] = []

        async def wait(name: str, *, first: bool = False) -> None:
            await window.acquire(first=first)
            order.append(name)

        new = [asyncio.create_task(wait(f"new{i}")) for i in range(3)]
        resent = asyncio.create_task(wait("resent", first=True))
        cancelled = asyncio.create_task(wait("cancelled"))
        await asyncio.sleep(0)
        cancelled.cancel()
        window.release()
        window.release()  # two slots free, but the window holds one request
        await asyncio.sleep(0)
        assert order == ["resent"] and window.in_flight == 1
        for _ in range(3):
            window.release()
            await asyncio.sleep(0)
        assert order == ["resent", "new0", "new1", "new2"]
        await asyncio.gather(*new, resent)
        window.release()
        assert window.in_flight == 0

    asyncio.run(scenario())
