"""Replaying a deferred row: the job's own row path, guarded by the ledger against stale writes.

Used by the replay function (one Pub/Sub message at a time) and by ``phonesync replay`` in
local mode. A replay whose patient got a newer number since (a later run date, or a later
sheet row) is ``stale`` and writes nothing: an old failure never overwrites a newer number.
"""

from __future__ import annotations

import asyncio
import time

from common.outcomes import Status
from common.phones import PhoneFormat
from common.store import StateStore, WorkItem
from common.sync import Ledger, PatientRegistry, RowResult, ledger_verdict, sync_row


class ReplayDeferred(Exception):
    """The row failed transiently again: raise it so Pub/Sub redelivers the message later."""


async def replay_item(
    item: WorkItem,
    run_date: str,
    registry: PatientRegistry,
    store: StateStore,
    ledger: Ledger,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
) -> RowResult:
    """Apply one deferred row and record its outcome in the ledger and the run's counts."""
    key = ledger.nik_key(item.nik)
    entry = (await asyncio.to_thread(store.ledger_get, [key])).get(key)
    verdict = ledger_verdict(item, entry, ledger)
    result = (
        RowResult(item, verdict)
        if verdict is not None
        else await sync_row(item, registry, ledger, fmt)
    )
    if result.ledger is not None:
        await asyncio.to_thread(store.ledger_put, [result.ledger])
    await asyncio.to_thread(store.record_replay, run_date, result.outcome, time.time())
    return result


def must_retry(result: RowResult) -> bool:
    return result.outcome.status is Status.DEFERRED
