"""Applying winning rows to the FHIR registry: one row's path, and a shard's worth at a time.

A row goes: ledger check → search by NIK → decide → write with If-Match (a PUT, or a JSON
Patch of the telecom change guarded by ``test`` ops too: ``FHIR_WRITE``). On a version conflict
(412/409, or a patch whose ``test`` no longer holds on a fresh read) the patient is re-read and
the decision made again (bounded), so another writer's changes survive. The same :func:`sync_row` serves the nightly job and the replay function.

Crash safety does not rest on the ledger alone: a row whose PUT landed but whose outcome was
not yet recorded is, on rerun, found already holding the number (``unchanged``, no PUT).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from common.fhir import (
    FhirAuthError,
    FhirConflict,
    FhirPatchRefused,
    FhirPatchUnexpressible,
    FhirPermanentError,
    FhirTransientError,
    patch_raced,
)
from common.outcomes import RowOutcome, Status
from common.patient import Resource, decide
from common.phones import Phone, PhoneFormat
from common.privacy import keyed_hash
from common.recording import RowResult
from common.store import LedgerEntry, StateStore, WorkItem

MAX_CONFLICT_RETRIES = 3


class PatientRegistry(Protocol):
    """What sync needs of a FHIR client (:class:`common.fhir.FhirClient` provides it)."""

    async def search_by_nik(self, nik: str) -> list[Resource]: ...

    async def read(self, patient_id: str) -> Resource: ...

    async def write(
        self, before: Resource, after: Resource, *, version_id: str | None
    ) -> Resource: ...


@dataclass(slots=True)
class Ledger:
    """Keyed hashes for the ledger; the key comes from Secret Manager (a fixed one locally)."""

    key: bytes

    def nik_key(self, nik: str) -> str:
        return keyed_hash(nik, self.key)

    def phone_hash(self, phone_e164: str) -> str:
        return keyed_hash(phone_e164, self.key)


def _phone_of(item: WorkItem) -> Phone:
    return Phone(
        national="0" + item.phone.removeprefix("+62"), e164=item.phone, assigned=item.assigned
    )


def row_result(
    item: WorkItem,
    status: Status,
    reason: str,
    patient_id: str | None = None,
    **details: Any,
) -> RowResult:
    """``item``'s result: its outcome (see :meth:`RowOutcome.of`) and ``details`` (the ledger
    entry, the attempts of a deferred row …)."""
    outcome = RowOutcome.of(
        item.row,
        status,
        reason,
        nik=item.nik,
        patient_id=patient_id,
        assigned=item.assigned,
        since=item.since,
    )
    return RowResult(outcome, item, **details)


def ledger_verdict(item: WorkItem, entry: LedgerEntry | None, ledger: Ledger) -> RowResult | None:
    """``already_applied`` / ``stale`` when the ledger settles the row without a FHIR call.

    Only reads of the sheet are compared, never sheet dates or row numbers: a row from the
    latest read applies whatever an earlier read applied (the officer may have corrected it
    anywhere in the sheet), and a row from an older read (a replay, a task of an older
    execution) never overwrites a number a later read applied or confirmed.
    """
    if entry is None:
        return None
    if entry.phone_hash == ledger.phone_hash(item.phone):
        # This read confirms the number: remember it, so an older read's replay stays stale.
        confirmed = replace(entry, read_at=item.read_at) if item.read_at > entry.read_at else None
        reason = f"applied by {entry.run_date} row {entry.row}"
        return row_result(item, Status.ALREADY_APPLIED, reason, ledger=confirmed)
    if entry.read_after(item.read_at):
        reason = (
            f"a later read of the sheet applied another number ({entry.run_date} row {entry.row})"
        )
        return row_result(item, Status.STALE, reason)
    return None


async def sync_row(
    item: WorkItem,
    registry: PatientRegistry,
    ledger: Ledger,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
) -> RowResult:
    """Bring one patient to the row's number. Never raises for a row-level failure.

    The PUT carries no ``meta.versionId`` / ``lastUpdated`` (the server owns them); the version
    read goes as ``If-Match``, so a concurrent change answers 412 and the row is decided again.
    """
    phone = _phone_of(item)
    try:
        matches = await registry.search_by_nik(item.nik)
        for _ in range(MAX_CONFLICT_RETRIES + 1):
            decision = decide(matches, phone, fmt)
            if decision.resource is None:
                applied = decision.status is Status.UNCHANGED
                return row_result(
                    item,
                    decision.status,
                    decision.reason,
                    decision.patient_id,
                    ledger=_entry(item, ledger, matches[0]) if applied else None,
                )
            version = (matches[0].get("meta") or {}).get("versionId")
            try:
                stored = await registry.write(matches[0], decision.resource, version_id=version)
            except FhirConflict:
                # Another writer changed the patient since we read it: re-read and decide again.
                matches = [await registry.read(str(decision.patient_id))]
                continue
            except FhirPatchRefused as exc:
                # A failed test op is a lost race too; any other refusal is the row's error.
                fresh = await registry.read(str(decision.patient_id))
                if not patch_raced(exc.document, fresh):
                    raise
                matches = [fresh]
                continue
            except FhirPatchUnexpressible as exc:
                return row_result(item, Status.ERROR, str(exc), decision.patient_id)
            return row_result(
                item,
                Status.UPDATED,
                decision.reason,
                decision.patient_id,
                ledger=_entry(item, ledger, stored),
            )
        return row_result(
            item,
            Status.DEFERRED,
            f"version conflict persisted after {MAX_CONFLICT_RETRIES} re-reads",
            attempts=MAX_CONFLICT_RETRIES + 1,
        )
    except FhirAuthError as exc:
        reason = f"FHIR refused our credentials ({exc}); replay after fixing them"
        return row_result(item, Status.DEFERRED, reason, attempts=1, auth_refused=True)
    except FhirPermanentError as exc:
        return row_result(item, Status.ERROR, f"FHIR rejected the update: {exc}")
    except FhirTransientError as exc:
        return row_result(item, Status.DEFERRED, str(exc), attempts=exc.attempts)


def _entry(item: WorkItem, ledger: Ledger, patient: Resource) -> LedgerEntry:
    """The ledger entry of ``item``, now that ``patient`` (as the registry answered: the
    write's result, or the read that found the number there) holds its number."""
    meta = patient.get("meta") or {}
    return LedgerEntry(
        key=ledger.nik_key(item.nik),
        phone_hash=ledger.phone_hash(item.phone),
        run_date=item.date,
        row=item.row,
        applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
        read_at=item.read_at,
        registry_version=str(meta.get("versionId") or ""),
        registry_updated=str(meta.get("lastUpdated") or ""),
    )


@dataclass(slots=True)
class ShardProgress:
    total: int
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, outcome: RowOutcome) -> None:
        self.done += 1
        self.counts[outcome.status.value] = self.counts.get(outcome.status.value, 0) + 1

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


class ShardHooks(Protocol):
    """Where a shard's results go as they happen (the job: store, Pub/Sub, logs, progress)."""

    async def flush(self, results: Sequence[RowResult], progress: ShardProgress) -> None: ...


async def sync_shard(
    items: Sequence[WorkItem],
    registry: PatientRegistry,
    store: StateStore,
    ledger: Ledger,
    hooks: ShardHooks,
    *,
    concurrency: int,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
    flush_every: int = 500,
    flush_seconds: float = 2.0,
) -> ShardProgress:
    """Sync every item with ``concurrency`` workers, handing results to ``hooks`` in batches.

    Results are flushed at least every ``flush_seconds`` and every ``flush_every`` rows, and
    once more at the end, so a crash loses at most one batch of *records* (never a write: see
    the module docstring).
    """
    progress = ShardProgress(total=len(items))
    keys = [ledger.nik_key(i.nik) for i in items]
    known = await asyncio.to_thread(store.ledger_get, keys)
    pending: list[RowResult] = []
    todo: asyncio.Queue[WorkItem] = asyncio.Queue()
    for item, key in zip(items, keys, strict=True):
        verdict = ledger_verdict(item, known.get(key), ledger)
        if verdict is not None:
            pending.append(verdict)
            progress.add(verdict.outcome)
        else:
            todo.put_nowait(item)
    batch_due = asyncio.Event()
    workers_done = False
    refused: list[str] = []  # the reason, once the server refused our credentials

    async def flusher() -> None:
        """Hand results to ``hooks`` in batches, off the workers' path: a worker never waits
        on the store. Ends after the workers, with nothing left pending."""
        nonlocal pending
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch_due.wait(), timeout=flush_seconds)
            batch_due.clear()
            if pending:
                batch, pending = pending, []
                await hooks.flush(batch, progress)
            if workers_done and not pending:
                return

    async def worker() -> None:
        while True:
            try:
                item = todo.get_nowait()
            except asyncio.QueueEmpty:
                return
            if refused:
                result = row_result(item, Status.DEFERRED, refused[0])
            else:
                result = await sync_row(item, registry, ledger, fmt)
                if result.auth_refused and not refused:
                    refused.append(result.outcome.reason)
            pending.append(result)
            progress.add(result.outcome)
            if len(pending) >= flush_every:
                batch_due.set()

    flushing = asyncio.create_task(flusher())
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, todo.qsize())))))
    except BaseException:  # cancelled (a lost shard lease) or failed: the flusher goes too
        flushing.cancel()
        raise
    workers_done = True
    batch_due.set()
    await flushing  # re-raises a failed flush (e.g. Pub/Sub down): the task is retried
    return progress
