"""Reconciling the registry with the sheet: find the NIKs whose number drifted, and repair them
through the job's own write path.

For every NIK whose newest sheet row (the sheet rules, ``common/planning.py``, on a fresh read:
the newest read decides) falls in the window, the registry is searched for the NIK and its
mobile number compared with the sheet's (:func:`classify`). The searches go as the job's do,
through :class:`~common.fhir.BatchingRegistry`: in batch Bundles when the server lists
``batch``, one NIK an entry. What the registry answers decides, never the ledger: after a
restore the ledger still says "applied" for numbers the registry lost. The ledger serves only
to tell another writer's later change (``registry_newer``) from a loss: it keeps the version the
registry gave phonesync's write (docs/decisions.md, record 87).

``repair`` writes the sheet's number with :func:`common.sync.sync_row` (search, decide, PUT with
If-Match, batched), the job's path, and records the new ledger entries. A Cloud Run task
reconciles its shard of the NIKs (``common.planning.shard_of``, as the nightly run splits them);
each task records its counts and drift rows in the store, and the one that records last closes
the reconcile and logs its ``reconcile_finished`` line (:func:`reconcile_shard`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from common.config import Settings
from common.drift import (
    DEFAULT_MAX_REPAIRS,
    DRIFT,
    REPAIRABLE,
    DriftClass,
    DriftRow,
    ReconcileRun,
    class_counts,
    drift_total,
)
from common.fhir import FhirAuthError, FhirError
from common.jakarta import jakarta_today
from common.outcomes import Status
from common.patient import Resource, decide, mobile_phone_entry, patient_id
from common.phones import Phone, PhoneFormat, holds
from common.planning import Candidate, DateWindow, plan_rows, shard_of
from common.privacy import mask_nik
from common.registry import check_server, open_registry
from common.runtime import ledger_key
from common.sheet_access import read_rows
from common.store import LedgerEntry, StateStore, WorkItem, read_stamp
from common.sync import Ledger, PatientRegistry, sync_row
from common.telemetry import bind, log_event

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    since: date
    until: date
    repair: bool = False
    #: Also overwrite ``registry_newer`` NIKs (another writer's number) with the sheet's.
    repair_registry_newer: bool = False
    max_repairs: int = DEFAULT_MAX_REPAIRS

    @property
    def window(self) -> DateWindow:
        return DateWindow(self.since, self.until)

    @property
    def repaired_classes(self) -> frozenset[DriftClass]:
        if not self.repair:
            return frozenset()
        newer = {DriftClass.REGISTRY_NEWER} if self.repair_registry_newer else set()
        return REPAIRABLE | newer


def settled_until(lookback_days: int, today: date | None = None) -> date:
    """The newest sheet date every nightly run that takes its rows has finished: yesterday's
    run, and the ``lookback_days`` runs after a date, take that date's rows. A reconcile whose
    window ended later would call rows the next night will apply drift."""
    return (today or jakarta_today()) - timedelta(days=1 + lookback_days)


@dataclass(frozen=True, slots=True)
class Finding:
    """What the registry holds for one NIK of the window, and what ``--repair`` did."""

    candidate: Candidate
    drift: DriftClass
    reason: str
    patient_id: str | None = None
    repair: str = ""

    @property
    def repaired(self) -> bool:
        return self.repair.startswith("repaired")

    @property
    def repair_failed(self) -> bool:
        return self.repair.startswith("repair failed")

    def as_row(self) -> DriftRow:
        c = self.candidate
        return DriftRow(
            row=c.row,
            nik_masked=mask_nik(c.nik),
            drift=self.drift,
            sheet_date=c.date.isoformat(),
            patient_id=self.patient_id,
            reason=self.reason,
            repair=self.repair,
        )


def classify(
    matches: Sequence[Resource], phone: Phone, fmt: PhoneFormat, entry: LedgerEntry | None
) -> tuple[DriftClass, str, str | None]:
    """The class of one NIK, why, and its patient's id. ``entry``: phonesync's ledger entry
    for the NIK, which only says whether the registry changed after phonesync's write."""
    if len(matches) != 1:
        decision = decide(matches, phone, fmt)  # not_found / ambiguous, as the job says them
        drift = DriftClass.NOT_FOUND if not matches else DriftClass.AMBIGUOUS
        return drift, decision.reason, None
    patient = matches[0]
    pid = patient_id(patient)
    current = mobile_phone_entry(patient)
    value = None if current is None else str(current.get("value", ""))
    if value == phone.formatted(fmt):
        return DriftClass.IN_SYNC, "the patient holds the sheet's number", pid
    if value is not None and holds(value, phone):
        return DriftClass.FORMAT_ONLY, "the patient holds the sheet's number, spelt otherwise", pid
    newer = _changed_since(patient, entry)
    if newer is not None:
        return DriftClass.REGISTRY_NEWER, newer, pid
    if value is None:
        return DriftClass.MISSING, "the patient has no mobile phone entry", pid
    return DriftClass.DIFFERENT, "the patient holds another number", pid


def _changed_since(patient: Resource, entry: LedgerEntry | None) -> str | None:
    """Why the patient counts as changed by another writer after phonesync's last write, or
    None: its version is not the one phonesync's write got, and it was stored no earlier. A
    restored backup gives back an earlier version, stored earlier: that is a loss, not news."""
    if entry is None or not entry.registry_version or not entry.registry_updated:
        return None  # phonesync never wrote it, or wrote it before versions were kept
    meta = patient.get("meta") or {}
    version = str(meta.get("versionId") or "")
    if not version or version == entry.registry_version:
        return None
    stored, ours = _instant(meta.get("lastUpdated")), _instant(entry.registry_updated)
    if stored is None or ours is None or stored < ours:
        return None
    return (
        f"another writer changed the patient after phonesync's write ({entry.run_date} row"
        f" {entry.row}): version {version} of {_shown(stored)}, after {_shown(ours)}"
    )


def _instant(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def find_drift(
    candidates: Sequence[Candidate],
    registry: PatientRegistry,
    entries: Sequence[LedgerEntry | None],
    fmt: PhoneFormat,
    concurrency: int,
) -> list[Finding]:
    """Search every candidate's NIK and classify it (``entries``: each candidate's ledger
    entry, or None). A NIK the registry did not answer for is ``unchecked``; refused
    credentials stop the whole reconcile (``FhirAuthError``)."""

    async def check(index: int) -> Finding:
        candidate = candidates[index]
        try:
            matches = await registry.search_by_nik(candidate.nik)
        except FhirAuthError:
            raise
        except FhirError as exc:
            return Finding(candidate, DriftClass.UNCHECKED, f"the registry did not answer: {exc}")
        drift, reason, pid = classify(matches, candidate.phone, fmt, entries[index])
        return Finding(candidate, drift, reason, pid)

    return await _each(range(len(candidates)), check, concurrency)


async def repair(
    findings: Sequence[Finding],
    registry: PatientRegistry,
    ledger: Ledger,
    fmt: PhoneFormat,
    options: ReconcileOptions,
    read_at: str,
    concurrency: int,
    budget: int,
) -> tuple[list[Finding], list[LedgerEntry]]:
    """Write the sheet's number for the findings ``options`` repairs, in sheet order, at most
    ``budget`` of them, each through :func:`~common.sync.sync_row` (the job's path, which
    searches again and decides on what it finds). The findings with what was done, and the
    ledger entries of the patients that now hold their number."""
    chosen = options.repaired_classes
    wanted = sorted((f for f in findings if f.drift in chosen), key=lambda f: f.candidate.row)
    todo = wanted[:budget]
    left = {id(f) for f in wanted[budget:]}

    async def write(finding: Finding) -> tuple[Finding, LedgerEntry | None]:
        c = finding.candidate
        item = WorkItem(c.row, c.date.isoformat(), c.nik, c.phone.e164, c.phone.assigned, read_at)
        result = await sync_row(item, registry, ledger, fmt)
        status, why = result.outcome.status, result.outcome.reason
        if status is Status.UPDATED:
            done = f"repaired: {why}"
        elif status is Status.UNCHANGED:
            done = "repaired: the patient already held the number when the repair looked again"
        elif status in (Status.DEFERRED, Status.ERROR):
            done = f"repair failed ({status.value}): {why}"
        else:
            done = f"not repaired: {status.value} when the repair looked again ({why})"
        return replace(finding, repair=done), result.ledger

    written = {id(f): r for f, r in zip(todo, await _each(todo, write, concurrency), strict=True)}
    out: list[Finding] = []
    entries: list[LedgerEntry] = []
    for finding in findings:
        if id(finding) in written:
            repaired, entry = written[id(finding)]
            out.append(repaired)
            if entry is not None:
                entries.append(entry)
        elif id(finding) in left:
            out.append(
                replace(finding, repair=f"not repaired: over --max-repairs {options.max_repairs}")
            )
        elif finding.drift is DriftClass.REGISTRY_NEWER:
            out.append(
                replace(
                    finding,
                    repair="not repaired: another writer's number (--repair-registry-newer overwrites it)",
                )
            )
        else:
            out.append(finding)
    return out, entries


async def _each(items: Sequence[T], call: Callable[[T], Awaitable[R]], concurrency: int) -> list[R]:
    """``call`` on every item, ``concurrency`` at a time; the results in the items' order. The
    first exception stops every worker before its next item, and is raised."""
    results: dict[int, R] = {}
    queue = iter(enumerate(items))
    failures: list[Exception] = []

    async def worker() -> None:
        for index, item in queue:
            if failures:
                return
            try:
                results[index] = await call(item)
            except Exception as exc:
                failures.append(exc)
                return

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(items))))))
    if failures:
        raise failures[0]
    return [results[i] for i in range(len(items))]


def repair_budget(max_repairs: int, task_index: int, task_count: int) -> int:
    """This task's share of ``--max-repairs``: tasks cannot see each other's repairs, so the
    bound is split (the first ``max_repairs % task_count`` tasks take one more)."""
    share, extra = divmod(max_repairs, task_count)
    return share + (1 if task_index < extra else 0)


@dataclass(frozen=True, slots=True)
class ShardResult:
    """One task's reconcile: its findings, and the reconcile as a whole when this task was the
    last to record (``completed``, counts over every task)."""

    reconcile: ReconcileRun
    findings: list[Finding]
    counts: dict[str, int]
    completed: ReconcileRun | None
    requests: int

    @property
    def failed(self) -> bool:
        """Something is not known or not done: a NIK unchecked, a repair that failed."""
        return any(f.drift is DriftClass.UNCHECKED or f.repair_failed for f in self.findings)

    @property
    def drift_left(self) -> int:
        """Drift not repaired by this command."""
        return sum(1 for f in self.findings if f.drift in DRIFT and not f.repaired)


async def reconcile_shard(
    settings: Settings, store: StateStore, options: ReconcileOptions
) -> ShardResult:
    """Reconcile this task's shard of the window's NIKs (every NIK for a single task), record
    the findings and, when this task records last, close the reconcile. Raises
    ``FhirServerUnfit`` (not a FHIR R4 server), ``FhirTransientError`` (it did not answer),
    ``FhirAuthError`` (credentials refused) and ``InputError`` (the sheet) before recording."""
    index, count = settings.task_index, settings.task_count
    run = ReconcileRun(
        reconcile_id=settings.execution,
        since=options.since.isoformat(),
        until=options.until.isoformat(),
        task_count=count,
        started_at=time.time(),
        repair=options.repair,
    )
    bind(reconcile=run.reconcile_id, task_index=index, attempt=settings.cloud_run_task_attempt)
    log_event(
        "reconcile_started",
        f"reconcile {run.since}..{run.until}, task {index}/{count}"
        + (" with repairs" if options.repair else " (read-only)"),
        window=[run.since, run.until],
        repair=options.repair,
        repair_registry_newer=options.repair_registry_newer,
        max_repairs=options.max_repairs,
        config=settings.for_log(),
    )
    ledger = Ledger(ledger_key(settings))
    async with open_registry(settings) as registry:
        await check_server(registry.client, outage_is_fatal=True)
        read_at = read_stamp()  # this read of the sheet is the newest: it decides
        plan = await asyncio.to_thread(lambda: plan_rows(read_rows(settings), options.window))
        mine = [c for c in plan.candidates if shard_of(c.nik, count) == index]
        keys = [ledger.nik_key(c.nik) for c in mine]
        known = await asyncio.to_thread(store.ledger_get, keys)
        in_flight = registry.rows_in_flight()
        fmt = settings.phone_format
        entries = [known.get(key) for key in keys]
        findings = await find_drift(mine, registry.calls, entries, fmt, in_flight)
        if options.repair:
            budget = repair_budget(options.max_repairs, index, count)
            findings, written = await repair(
                findings, registry.calls, ledger, fmt, options, read_at, in_flight, budget
            )
            await asyncio.to_thread(store.ledger_put, written)
        requests = sum(registry.client.stats.requests.values())
    counts = class_counts(f.drift for f in findings)
    rows = [f.as_row() for f in findings if f.drift is not DriftClass.IN_SYNC]
    for row in rows:
        _log_row(row)
    completed = await asyncio.to_thread(
        store.record_reconcile, run, index, counts, rows, time.time()
    )
    log_event(
        "reconcile_task_finished",
        f"task {index}: {len(mine)} NIKs, {drift_total(counts)} drifted, {requests} requests",
        counts=counts,
        niks=len(mine),
        requests=requests,
        repaired=sum(1 for f in findings if f.repaired),
    )
    if completed is not None:
        log_finished(completed)
    return ShardResult(run, findings, counts, completed, requests)


def run_reconcile(settings: Settings, store: StateStore, options: ReconcileOptions) -> ShardResult:
    """:func:`reconcile_shard` in its own event loop (blocking).

    The result leaves the loop through a holder, not as the main task's result: on its way out
    ``asyncio.run`` looks up its SIGINT handler, which names the main task, and Python 3.11's
    ``signal.getsignal`` formats that handler's repr — result included — twice (100,000
    findings: seconds of CPU for nothing)."""
    held: list[ShardResult] = []

    async def main() -> None:
        held.append(await reconcile_shard(settings, store, options))

    asyncio.run(main())
    return held[0]


#: Lines per drift row: the drift metric counts them by class (in_sync and format_only need
#: nobody, and are only counted in the summary line).
_LOGGED = DRIFT | {DriftClass.UNCHECKED}


def _log_row(row: DriftRow) -> None:
    if row.drift not in _LOGGED:
        return
    log_event(
        "reconcile_drift",
        f"row {row.row}: {row.drift.value}",
        severity=logging.WARNING,
        **{"class": row.drift.value},
        row=row.row,
        nik=row.nik_masked,
        sheet_date=row.sheet_date,
        patient_id=row.patient_id,
        reason=row.reason,
        repair=row.repair,
    )


def log_finished(run: ReconcileRun) -> None:
    """The reconcile's one summary line: counts over every task."""
    drifted = drift_total(run.counts)
    duration = (run.finished_at or time.time()) - run.started_at
    log_event(
        "reconcile_finished",
        f"reconcile {run.since}..{run.until}: {drifted} of {sum(run.counts.values())} NIKs drifted",
        severity=logging.WARNING if drifted else logging.INFO,
        window=[run.since, run.until],
        counts=run.counts,
        drift=drifted,
        tasks=run.task_count,
        repair=run.repair,
        duration_seconds=round(duration, 1),
    )
