"""Replaying a deferred row: the job's own row path, guarded against overwriting newer reads.

Used by the replay function (one Pub/Sub message at a time) and by ``phonesync replay --via
direct`` (:func:`replay_directly`); both record the result as the job does
(:class:`common.recording.RowRecorder`). A replayed row must first be one its run planned: its NIK, phone and date pass the
sheet's rules (:func:`sheet_checked`) and the row is in that run's manifest with that NIK,
date and phone; else it is :class:`MalformedReplay`, and nothing is written or counted.

A replayed row comes from one read of the sheet; it is ``stale`` and writes nothing when a
later read re-decided the rows of its date (that run took care of this row), or applied or
confirmed another number for the patient. An old failure never overwrites a newer number,
whatever the sheet dates and row numbers say.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from common.config import Settings
from common.jakarta import jakarta_time
from common.outcomes import Status
from common.phones import InvalidPhone, PhoneFormat, normalize_phone
from common.planning import shard_of
from common.privacy import mask_nik
from common.recording import RowRecorder, RowResult, Source
from common.registry import check_server, open_registry
from common.runtime import ledger_key
from common.sheet import DATE_COLUMN, NIK_COLUMN, PHONE_COLUMN, InvalidCell, parse_date, parse_nik
from common.store import RunState, StateStore, WorkItem
from common.sync import Ledger, PatientRegistry, ledger_verdict, row_result, sync_row
from common.telemetry import log_event


class ReplayDeferred(Exception):
    """The row failed transiently again: raise it so Pub/Sub redelivers the message later."""


class MalformedReplay(ValueError):
    """The row is not one its run planned: retrying could never succeed. The message names the
    field and the reason (the sheet parser's own reasons), never the NIK or the phone."""


def log_malformed(row: int, nik: str, error: MalformedReplay) -> None:
    """``replay_malformed``: the row is dropped, not recorded; the NIK is masked."""
    log_event(
        "replay_malformed",
        f"row {row} is not replayed: {error}",
        severity=logging.ERROR,
        row=row,
        nik=mask_nik(nik),
        reason=str(error),
    )


async def replay_item(
    item: WorkItem,
    run_date: str,
    execution: str,
    registry: PatientRegistry,
    store: StateStore,
    ledger: Ledger,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
    *,
    source: Source = "replay",
) -> RowResult:
    """Apply one deferred row of ``execution``'s run of ``run_date`` and record its result
    (``source``: the replay function's or an operator's) as the job records its rows: the
    outcome moves the run's counts (while that execution still owns the date), the ledger
    entry, one ``row_outcome`` line.

    :class:`MalformedReplay` before anything is written when the row is not one that run
    planned; store errors propagate (transient: the message is delivered again)."""
    item = sheet_checked(item)
    run = await asyncio.to_thread(store.get_run, run_date)
    if run is None:
        raise MalformedReplay(f"no run of {run_date} is recorded")
    if run.execution == execution:
        item = await _planned(item, run, store)
        result = await _settled(item, store, ledger)
    else:  # a rerun took the date over and cleared this run's manifest
        result = await _stale(item, store)
        if result is None:
            raise MalformedReplay(
                f"the run of {run_date} is execution {run.execution}'s, not {execution}'s,"
                f" and no later read of the sheet re-decided {item.date}"
            )
    if result is None:
        result = await sync_row(item, registry, ledger, fmt)
    recorder = RowRecorder(store, run_date, execution, source, nik_key=ledger.nik_key)
    await asyncio.to_thread(recorder.record, [result])
    return result


def sheet_checked(item: WorkItem) -> WorkItem:
    """``item`` by the sheet's rules, in the manifest's form (ISO date, 16 ASCII digits,
    E.164); :class:`MalformedReplay` with the sheet parser's reason when a field fails them."""
    try:
        day = parse_date(item.date)
        nik = parse_nik(item.nik)
    except InvalidCell as exc:
        raise MalformedReplay(str(exc)) from None
    try:
        phone = normalize_phone(item.phone)
    except InvalidPhone as exc:
        raise MalformedReplay(f"{PHONE_COLUMN}: {exc}") from None
    return replace(item, date=day.isoformat(), nik=nik, phone=phone.e164)


async def _planned(item: WorkItem, run: RunState, store: StateStore) -> WorkItem:
    """``item`` once its row is found in the run's manifest with the same NIK (compared,
    never shown), date and phone; the manifest adds whether the number's range is assigned.
    Only the NIK's shard is read (for a malformed row: every shard)."""
    shard = shard_of(item.nik, run.task_count)
    found = await _manifest_row(store, run, shard, item.row)
    if found is None:  # not in its NIK's shard: another NIK's row, or no row at all
        for index in (i for i in range(run.task_count) if i != shard):
            if await _manifest_row(store, run, index, item.row) is not None:
                raise MalformedReplay(f"{NIK_COLUMN} does not match row {item.row} of the run")
        raise MalformedReplay(
            f"row {item.row} is not in the manifest of the {run.run_date} run ({run.execution})"
        )
    if found.nik != item.nik:
        raise MalformedReplay(f"{NIK_COLUMN} does not match row {item.row} of the run")
    if found.date != item.date:
        raise MalformedReplay(
            f"{DATE_COLUMN} does not match row {item.row} of the run (dated {found.date})"
        )
    if found.phone != item.phone:
        raise MalformedReplay(f"{PHONE_COLUMN} does not match row {item.row} of the run")
    return replace(item, assigned=found.assigned)  # the message's read decides staleness


async def _manifest_row(store: StateStore, run: RunState, shard: int, row: int) -> WorkItem | None:
    items = await asyncio.to_thread(store.read_shard, run.run_date, run.execution, shard)
    if items is None:
        raise MalformedReplay(no_manifest(run, store.clock()))
    return next((i for i in items if i.row == row), None)


def no_manifest(run: RunState, now: float) -> str:
    """Why a run's manifest cannot be read: not written, or expired (then a rerun replaces a
    replay: the manifest's full NIKs and numbers are kept MANIFEST_RETENTION_DAYS only)."""
    message = f"the {run.run_date} run ({run.execution}) has no manifest"
    if run.manifest_expires is not None and run.manifest_expired(now):
        expired = jakarta_time(run.manifest_expires)
        message += f": it expired at {expired} (MANIFEST_RETENTION_DAYS); rerun the date instead"
    return message


async def _settled(item: WorkItem, store: StateStore, ledger: Ledger) -> RowResult | None:
    """The result when the store alone settles the row (no FHIR call), else None."""
    stale = await _stale(item, store)
    if stale is not None:
        return stale
    key = ledger.nik_key(item.nik)
    entry = (await asyncio.to_thread(store.ledger_get, [key])).get(key)
    return ledger_verdict(item, entry, ledger)


async def _stale(item: WorkItem, store: StateStore) -> RowResult | None:
    """``stale`` when a later read of the sheet re-decided the row's date, else None."""
    read = await asyncio.to_thread(store.last_read, item.date)
    if read > item.read_at:
        reason = f"the sheet was read again since (at {read[:19]}Z) and this row re-decided"
        return row_result(item, Status.STALE, reason)
    return None


def must_retry(result: RowResult) -> bool:
    return result.outcome.status is Status.DEFERRED


async def replay_directly(
    settings: Settings, store: StateStore, run_date: str, items: Sequence[WorkItem]
) -> dict[str, int]:
    """``phonesync replay --via direct``: the replay function's path, run from this machine,
    after the job's check of the FHIR server (an operator's ``--fhir-url`` is the likeliest
    wrong one: ``FhirServerUnfit``; no answer at all: ``FhirTransientError``). Each row goes
    through the function's checks too: one that fails them is logged as ``replay_malformed``
    and counted ``malformed``. Counts by status."""
    counts: dict[str, int] = {}
    ledger = Ledger(ledger_key(settings))
    run = await asyncio.to_thread(store.get_run, run_date)
    execution = run.execution if run is not None else ""  # the items are its manifest's
    async with open_registry(settings) as registry:
        await check_server(registry.client, outage_is_fatal=True)
        for item in items:
            try:
                result = await replay_item(
                    item,
                    run_date,
                    execution,
                    registry.client,
                    store,
                    ledger,
                    settings.phone_format,
                    source="operator",
                )
            except MalformedReplay as exc:
                log_malformed(item.row, item.nik, exc)
                status = "malformed"
            else:
                status = result.outcome.status.value
            counts[status] = counts.get(status, 0) + 1
    return counts
