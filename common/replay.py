"""Replaying a deferred row: the job's own row path, guarded against overwriting newer reads.

Used by the replay function (one Pub/Sub message at a time) and by ``phonesync replay`` in
local mode. A replayed row comes from one read of the sheet; it is ``stale`` and writes
nothing when a later read re-decided the rows of its date (that run took care of this row),
or applied or confirmed another number for the patient. An old failure never overwrites a
newer number, whatever the sheet dates and row numbers say.
"""

from __future__ import annotations

import asyncio
import time

from common.outcomes import Status
from common.phones import PhoneFormat
from common.store import StateStore, WorkItem
from common.sync import Ledger, PatientRegistry, RowResult, ledger_verdict, row_outcome, sync_row


class ReplayDeferred(Exception):
    """The row failed transiently again: raise it so Pub/Sub redelivers the message later."""


async def replay_item(
    item: WorkItem,
    run_date: str,
    execution: str,
    registry: PatientRegistry,
    store: StateStore,
    ledger: Ledger,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
) -> RowResult:
    """Apply one deferred row of ``execution``'s run of ``run_date``; record its outcome in
    the ledger and in the run's counts (while that execution still owns the date)."""
    result = await _settled(item, store, ledger)
    if result is None:
        result = await sync_row(item, registry, ledger, fmt)
    if result.ledger is not None:
        await asyncio.to_thread(store.ledger_put, [result.ledger])
    await asyncio.to_thread(store.record_replay, run_date, execution, result.outcome, time.time())
    return result


async def _settled(item: WorkItem, store: StateStore, ledger: Ledger) -> RowResult | None:
    """The result when the store alone settles the row (no FHIR call), else None."""
    read = await asyncio.to_thread(store.last_read, item.date)
    if read > item.read_at:
        reason = f"the sheet was read again since (at {read[:19]}Z) and this row re-decided"
        return RowResult(item, row_outcome(item, Status.STALE, reason))
    key = ledger.nik_key(item.nik)
    entry = (await asyncio.to_thread(store.ledger_get, [key])).get(key)
    return ledger_verdict(item, entry, ledger)


def must_retry(result: RowResult) -> bool:
    return result.outcome.status is Status.DEFERRED
