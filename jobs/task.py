"""One Cloud Run task of the nightly job (``phonesync run``; task index from the environment).

Task 0 takes the run lock, checks the FHIR server, reads the sheet once and writes the
manifest: one shard per task. Shards are leases a task claims: each task syncs its own shard
first, then any shard nobody holds or whose holder's lease expired, and waits while others
hold live leases, until every shard is finished; the call that finishes the last one closes
the run. So the last live task finishes the run, whichever tasks died on the way. Exit codes
follow the Cloud Run convention: non-zero only when the task should be retried (Cloud Run
reruns it); row-level failures are recorded outcomes, not crashes.

When the run cannot proceed (``FHIR_BASE_URL`` is not a FHIR R4 server that answers, checked
before anything else; or task 0 could not read or use the sheet), task 0 marks it failed and
exits 1; every other task sees that within a second and exits 1 too (``task_stopped``). Cloud
Run has no exit code for "do not retry": any non-zero exit is retried up to ``max_retries``, and
only non-zero exits make the execution fail (and the "execution failed" alert fire). A retry is
cheap and is also the recovery: a retried task 0 reads the sheet again (fixed meanwhile, or the
API back) and revives the run; a retried task finding it running again waits for the manifest.
A revived task 0 syncs every shard whose task has given up meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Settings, jakarta_today
from common.errors import InputError
from common.fhir import FhirClient, FhirServerUnfit
from common.officer_report import waiting_of, write_officer_report
from common.outcomes import NEEDS_OFFICER, SHEET_REJECTED, Status
from common.privacy import redact
from common.recording import Publish, RowRecorder, RowResult
from common.registry import Registry, check_server, open_registry
from common.runtime import ledger_key, open_store
from common.store import (
    LockResult,
    RunState,
    RunStatus,
    ShardState,
    StateStore,
)
from common.sync import Ledger, ShardProgress, sync_shard
from common.telemetry import bind, log_event
from common.unsettled import log_unsettled_runs
from jobs.night_plan import plan_night

EXIT_OK = 0
EXIT_RETRY = 1
#: How often a task with nothing to claim looks again for a shard whose holder's lease expired.
SHARD_POLL_SECONDS = 5.0


@dataclass(slots=True)
class JobHooks:
    """Where each batch of a shard's results goes: the row recorder, then the task's progress."""

    config: Settings
    store: StateStore
    run_date: str
    shard: int
    recorder: RowRecorder
    progress_interval: float = 5.0
    _last_progress: float = 0.0

    async def flush(self, results: Sequence[RowResult], progress: ShardProgress) -> None:
        await asyncio.to_thread(self.recorder.record, results)
        now = time.monotonic()
        if now - self._last_progress >= self.progress_interval or progress.done == progress.total:
            self._last_progress = now
            await asyncio.to_thread(self._progress, progress)

    def _progress(self, progress: ShardProgress) -> None:
        self.store.put_progress(
            self.run_date,
            ShardState(
                shard=self.shard,
                execution=self.config.execution,
                total=progress.total,
                done=progress.done,
                counts=dict(progress.counts),
                updated_at=time.time(),
            ),
        )
        log_event(
            "task_progress",
            f"task {self.config.task_index}, shard {self.shard}:"
            f" {progress.done}/{progress.total} rows",
            shard=self.shard,
            done=progress.done,
            total=progress.total,
            counts=progress.counts,
            rows_per_second=round(progress.rate, 1),
        )


def run_task(config: Settings) -> int:
    """Run this task to the end; returns the process exit code."""
    started = time.time()
    store = open_store(config)
    try:
        return asyncio.run(_run_task(config, store, started))
    finally:
        store.close()


async def _run_task(config: Settings, store: StateStore, started: float) -> int:
    execution, index = config.execution, config.task_index
    today = (config.run_date or jakarta_today()).isoformat()
    run_date = await asyncio.to_thread(store.bind_execution_date, execution, today)
    bind(
        run_date=run_date,
        execution=execution,
        task_index=index,
        attempt=config.cloud_run_task_attempt,
    )
    log_event(
        "task_started", f"task {index}/{config.task_count} for {run_date}", config=config.for_log()
    )

    async with open_registry(config) as registry:
        if index == 0:
            ended = await _start_run(config, store, run_date, registry.client)
            if ended is not None:
                return ended
        ended = await _wait_for_manifest(config, store, run_date, started)
        if ended is not None:
            return ended
        work = await _sync_shards(config, store, run_date, registry)
    log_event(
        "task_finished",
        f"task {index} done: shards {work.shards}, {work.counts}",
        shards=work.shards,  # the shards this task synced, its own and those it took over
        counts=work.counts,
        total=work.total,
        fhir_rate_limited=registry.client.stats.rate_limited,  # 429 answers
        fhir_throttled=registry.throttles.count,  # times they narrowed the window
        fhir_concurrency_limit=registry.client.concurrency_limit,  # at the end
    )
    if work.final is not None:
        waiting = await asyncio.to_thread(waiting_of, config, store, work.final)
        _log_run_finished(work.final)
        await asyncio.to_thread(write_officer_report, config, store, work.final, waiting)
        await asyncio.to_thread(log_unsettled_runs, store, run_date, time.time())
    return EXIT_OK


async def _start_run(
    config: Settings, store: StateStore, run_date: str, client: FhirClient
) -> int | None:
    """Task 0: take the lock, check the FHIR server, write the manifest. The exit code when
    the task ends here (another execution holds the date, or the run cannot start), else None.

    The server is checked before the sheet is read and after the lock is taken, so that a
    failure is this execution's run's (``phonesync status`` shows it, the other tasks stop).
    A retried task 0 that finds the manifest written does not check again: it was written
    after a check that passed."""
    execution = config.execution
    lock = await asyncio.to_thread(
        store.acquire_run,
        run_date,
        execution,
        config.task_count,
        config.lease_seconds,
        time.time(),
    )
    if lock is LockResult.HELD:
        run = await asyncio.to_thread(store.get_run, run_date)
        holder = run.execution if run else "?"
        log_event(
            "lock_held", f"{run_date} is being synced by {holder}; nothing to do", holder=holder
        )
        return EXIT_OK
    run = await asyncio.to_thread(store.get_run, run_date)
    if run is not None and run.manifest_ready:
        return None
    try:
        await check_server(client)
        await asyncio.to_thread(plan_night, config, store, run_date)
    except (InputError, FhirServerUnfit) as exc:
        return await _fail_run(store, run_date, execution, str(exc))
    except Exception as exc:
        return await _fail_run(store, run_date, execution, _cause(exc), error=True)
    return None


@dataclass(slots=True)
class _Work:
    """What a task synced: the shards, their rows by status, and the run if this task closed it."""

    shards: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    final: RunState | None = None

    def add(self, shard: int, progress: ShardProgress) -> None:
        self.shards.append(shard)
        self.total += progress.total
        for status, n in progress.counts.items():
            self.counts[status] = self.counts.get(status, 0) + n


@dataclass(slots=True)
class _Held:
    """The shard this task is syncing, for the lease renewer (which cancels a lost one)."""

    shard: int | None = None
    sync: asyncio.Task[ShardProgress] | None = None
    lost: bool = False


async def _sync_shards(
    config: Settings, store: StateStore, run_date: str, registry: Registry
) -> _Work:
    """Claim shards and sync them until every shard of the run is finished.

    Order: shards this task holds (its dead attempt's), its own, then any other whose lease is
    absent or expired. While others hold live leases it polls, so a dead holder's shard is
    taken over once its lease expires. One shard at a time, one holder at a time: the renewer
    stops a sync whose lease another task has taken over."""
    index, execution = config.task_index, config.execution
    work, held = _Work(), _Held()
    renewer = asyncio.create_task(_renew_leases(config, store, run_date, held))
    try:
        while True:
            run = await asyncio.to_thread(store.get_run, run_date)
            if run is None or run.execution != execution:
                log_event(
                    "lease_lost", "another execution took over this date", severity=logging.WARNING
                )
                return work
            if run.status is not RunStatus.RUNNING:
                return work  # closed by the task that finished the last shard
            states = {
                s.shard: s
                for s in await asyncio.to_thread(store.shard_states, run_date)
                if s.execution == execution
            }
            if all(states.get(i) and states[i].finished for i in range(config.task_count)):
                # Every shard is finished and the run still open: its closer died between
                # claiming and closing it (this is its retry), or is closing it right now.
                work.final = await asyncio.to_thread(
                    store.close_run, run_date, execution, index, time.time()
                )
                return work
            now = time.time()
            shard = next(
                (
                    i
                    for i in _claim_order(index, config.task_count, states)
                    if i not in states or states[i].claimable_by(index, now)
                ),
                None,
            )
            if shard is None or not await asyncio.to_thread(
                store.claim_shard, run_date, execution, shard, index, config.lease_seconds, now
            ):
                await asyncio.sleep(min(SHARD_POLL_SECONDS, config.lease_seconds / 3))
                continue
            _log_claimed(index, shard, states.get(shard), now)
            held.shard, held.lost = shard, False
            try:
                progress = await _sync_shard(config, store, run_date, registry, shard, held)
                if progress is None:
                    continue  # taken over by another task, which syncs it now
                final = await asyncio.to_thread(
                    store.finish_shard, run_date, execution, shard, index, time.time()
                )
            finally:
                held.shard, held.sync = None, None
            work.add(shard, progress)
            work.final = work.final or final
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


def _claim_order(index: int, count: int, states: dict[int, ShardState]) -> list[int]:
    """Shards this task holds first (a retried attempt resumes them), then its own, then the
    others from the next index on (tasks looking for work spread over different shards)."""
    mine = [i for i, s in sorted(states.items()) if s.owner == index and not s.finished]
    rest = [(index + n) % count for n in range(count)]
    return list(dict.fromkeys(mine + rest))


def _log_claimed(index: int, shard: int, before: ShardState | None, now: float) -> None:
    if before is None or before.owner is None:
        how, previous = "unclaimed", None
    elif before.owner == index:
        how, previous = "resumed from this task's previous attempt", index
    else:
        how = f"taken over from task {before.owner}, whose lease expired"
        how += f" {now - before.lease_until:.0f} s ago"
        previous = before.owner
    log_event(
        "shard_claimed",
        f"task {index} claimed shard {shard} ({how})",
        shard=shard,
        previous_owner=previous,
    )


async def _sync_shard(
    config: Settings,
    store: StateStore,
    run_date: str,
    registry: Registry,
    shard: int,
    held: _Held,
) -> ShardProgress | None:
    """Sync a shard this task has claimed, from its first row (rows already applied cost no
    FHIR call: the ledger). None when the lease was lost meanwhile, or the manifest is gone
    (another execution took the date over)."""
    items = await asyncio.to_thread(store.read_shard, run_date, config.execution, shard)
    if items is None:
        return None
    ledger = Ledger(ledger_key(config))
    recorder = RowRecorder(
        store, run_date, config.execution, publish=_publisher(config), nik_key=ledger.nik_key
    )
    hooks = JobHooks(config, store, run_date, shard, recorder)
    await asyncio.to_thread(hooks._progress, ShardProgress(total=len(items)))
    held.sync = asyncio.create_task(
        sync_shard(
            items,
            registry.calls,
            store,
            ledger,
            hooks,
            concurrency=registry.rows_in_flight(),
            fmt=config.phone_format,
        )
    )
    try:
        return await held.sync  # its last flush wrote the shard's final progress
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if held.lost and task is not None and not task.cancelling():
            return None
        raise


async def _fail_run(
    store: StateStore, run_date: str, execution: str, reason: str, *, error: bool = False
) -> int:
    """Mark the run failed and say why; Cloud Run retries task 0.

    The run's first failure is a ``run_failed`` event (ERROR; the runs metric counts it); a
    retried task 0 failing the same run again logs ``run_failed_again`` (WARNING), so a run
    is counted once however many retries fail. ``error``: the cause is not the input's fault
    as far as we know (an unexpected exception): the event says so, so on-call looks at the
    code and not at the sheet."""
    failures = await asyncio.to_thread(store.fail_run, run_date, execution, reason, time.time())
    first = failures == 1
    log_event(
        "run_failed" if first else "run_failed_again",
        f"cannot start the run: {reason}"
        + ("" if first else f" (failure {failures} of this run: task 0 retried)"),
        severity=logging.ERROR if first else logging.WARNING,
        status="failed",
        reason=reason,
        unexpected=error,
        failures=failures,
    )
    return EXIT_RETRY


def _cause(exc: BaseException) -> str:
    """``Type: message (at file:line in function)``, PII redacted, bounded for the run record."""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = (
        f" (at {Path(where[0].filename).name}:{where[0].lineno} in {where[0].name})"
        if where
        else ""
    )
    return redact(f"{type(exc).__name__}: {exc}"[:500] + at)


async def _wait_for_manifest(
    config: Settings, store: StateStore, run_date: str, started: float
) -> int | None:
    """None once task 0 has written this execution's manifest; otherwise the exit code (another
    execution owns the date, task 0 failed the run, or no manifest came in time). ``started``:
    when this task started (before it opened the store)."""
    deadline = time.monotonic() + config.manifest_timeout_seconds
    while True:
        run = await asyncio.to_thread(store.get_run, run_date)
        if run is not None and run.execution == config.execution and run.manifest_ready:
            return None
        # Another execution owns the date: *running* under a live lease, or started after this
        # task did (it ran, and finished, before we looked: our task 0 found it running and
        # stood down). A run that started before us does not count: our task 0 is about to
        # take the date over for this rerun. Standing down wrongly costs only speed: a task 0
        # that does take the date over syncs every shard nobody claimed.
        if (
            run is not None
            and run.execution != config.execution
            and (
                (run.status is RunStatus.RUNNING and run.lease_until > time.time())
                or run.started_at >= started
            )
        ):
            how = "is being" if run.status is RunStatus.RUNNING else "was"
            log_event(
                "lock_held",
                f"{run_date} {how} synced by {run.execution}; nothing to do",
                holder=run.execution,
            )
            return EXIT_OK
        if run is not None and run.execution == config.execution and run.status is RunStatus.FAILED:
            # Task 0 could not start this execution's run: waiting for a manifest that will not
            # come only delays the failure. Exit non-zero like task 0 (see the module docstring).
            log_event(
                "task_stopped",
                f"task 0 could not start the run: {run.reason}",
                severity=logging.ERROR,
                status="failed",
                reason=run.reason,
            )
            return EXIT_RETRY
        if time.monotonic() > deadline:
            log_event(
                "manifest_timeout",
                f"no manifest from task 0 after {config.manifest_timeout_seconds:.0f} s; retrying the task",
                severity=logging.ERROR,
            )
            return EXIT_RETRY
        await asyncio.sleep(1.0)


async def _renew_leases(config: Settings, store: StateStore, run_date: str, held: _Held) -> None:
    """Every third of ``LEASE_SECONDS``: the run's lease, and the lease of the shard being
    synced. Losing the shard's (this task stalled past its lease and another took the shard
    over) stops that sync at once, so the shard is never synced by two tasks for long."""
    execution, index, lease = config.execution, config.task_index, config.lease_seconds
    while True:
        await asyncio.sleep(lease / 3)
        now = time.time()
        if not await asyncio.to_thread(store.renew_lease, run_date, execution, lease, now):
            log_event(
                "lease_lost", "another execution took over this date", severity=logging.WARNING
            )
        shard = held.shard
        if shard is None or await asyncio.to_thread(
            store.renew_shard, run_date, execution, shard, index, lease, now
        ):
            continue
        if held.shard == shard and held.sync is not None:
            held.lost = True
            held.sync.cancel()
            log_event(
                "lease_lost",
                f"another task took over shard {shard}: this task stopped syncing it",
                severity=logging.WARNING,
                shard=shard,
            )


def _publisher(config: Settings) -> Publish | None:
    """Deferred rows' messages go to ``FAILURE_TOPIC``; locally (no topic) deferred rows stay in
    the store for ``phonesync replay``."""
    if not config.failure_topic:
        return None
    from common.failures import FailurePublisher, topic_path

    client = FailurePublisher()
    topic = topic_path(str(config.google_cloud_project), config.failure_topic)
    return lambda messages: client.publish_many(topic, messages)


def _log_run_finished(run: RunState) -> None:
    """The run's summary line: its status, counts by status, the rows needing an officer
    (``rejected``: by the sheet rules, by status; ``needs_officer``: those plus not_found and
    ambiguous), and the dates it covered: ``window`` (first, last), ``caught_up`` (missed
    nights it took in), ``unsynced`` (dates no finished run covers; ``unsynced_count``, which
    the missed-night alert reads)."""
    duration = (run.finished_at or time.time()) - run.started_at
    severity = logging.INFO if run.status is RunStatus.SUCCEEDED else logging.WARNING
    rejected = {
        s.value: run.counts[s.value]
        for s in Status
        if s in SHEET_REJECTED and run.counts.get(s.value)
    }
    log_event(
        "run_finished",
        f"run {run.run_date} {run.status.value} in {duration:.0f} s: {run.counts}",
        severity=severity,
        status=run.status.value,
        counts=run.counts,
        rejected=rejected,
        needs_officer=sum(run.counts.get(s.value, 0) for s in NEEDS_OFFICER),
        duration_seconds=round(duration, 1),
        window=[run.window_first or run.run_date, run.run_date],
        caught_up=run.caught_up,
        unsynced=run.unsynced,
        unsynced_count=len(run.unsynced),
    )
