"""Firestore transactions that survive contention: every task of an execution writes
``runs/{date}`` (leases, finishing a shard), and the client retries an aborted transaction at
once, up to its ``max_attempts`` (30 here). Under load (the emulator's pessimistic locks, a slow
machine) those can all abort within a second. Then the whole transaction runs again, after the
common backoff (:func:`common.retry.backoff_delay`), a few rounds in all, instead of crashing
the task with ``ValueError: Failed to commit transaction in 30 attempts``."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from google.cloud import firestore

from common.retry import backoff_delay

T = TypeVar("T")

#: Rounds of the client's attempts, and the backoff between rounds (seconds).
TRANSACTION_ROUNDS = 5
_BASE, _CAP = 0.2, 3.0
_EXHAUSTED = "Failed to commit transaction"  # the client's ValueError once attempts run out


def transactional(fn: Callable[..., T]) -> Callable[..., T]:
    """``firestore.transactional``, run again in rounds with backoff when its attempts run
    out. The wrapped function is re-run by the client anyway, so it must be pure but for its
    transaction's reads and writes (each of ours is)."""
    inner = firestore.transactional(fn)

    @functools.wraps(fn)
    def run(transaction: Any, *args: Any, **kwargs: Any) -> T:
        for round_ in range(TRANSACTION_ROUNDS):
            try:
                result: T = inner(transaction, *args, **kwargs)
                return result
            except ValueError as exc:
                if not str(exc).startswith(_EXHAUSTED) or round_ == TRANSACTION_ROUNDS - 1:
                    raise
                time.sleep(backoff_delay(round_, _BASE, _CAP))
        raise AssertionError("unreachable")

    return run
