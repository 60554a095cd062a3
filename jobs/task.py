"""One Cloud Run task of the nightly job (``phonesync run``; task index from the environment).

Task 0 takes the run lock, checks the FHIR server, reads the sheet once and writes the
manifest; every task then syncs its shard. Exit codes follow the Cloud Run convention: non-zero only when the task should be
retried (Cloud Run reruns it); row-level failures are recorded outcomes, not crashes.

When the run cannot proceed (``FHIR_BASE_URL`` is not a FHIR R4 server that answers, checked
before anything else; or task 0 could not read or use the sheet), task 0 marks it failed and
exits 1; every other task sees that within a second and exits 1 too (``task_stopped``). Cloud
Run has no exit code for "do not retry": any non-zero exit is retried up to ``max_retries``, and
only non-zero exits make the execution fail (and the "execution failed" alert fire). A retry is
cheap and is also the recovery: a retried task 0 reads the sheet again (fixed meanwhile, or the
API back) and revives the run; a retried task finding it running again waits for the manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.config import Settings, jakarta_today, lookback_start
from common.errors import InputError
from common.fhir import (
    BatchingRegistry,
    FhirAuthError,
    FhirClient,
    FhirServerUnfit,
    FhirTransientError,
)
from common.outcomes import NEEDS_OFFICER, SHEET_REJECTED, Status, summarize
from common.planning import DateWindow, plan_rows, shard_of
from common.runtime import fhir_settings, ledger_key, open_store
from common.sheet import SheetRow, read_csv
from common.store import (
    LockResult,
    RunState,
    RunStatus,
    StateStore,
    TaskProgress,
    WorkItem,
    read_stamp,
)
from common.sync import Ledger, RowResult, ShardProgress, sync_shard
from common.telemetry import bind, log_event, redact

EXIT_OK = 0
EXIT_RETRY = 1
_SEVERITY = {Status.DEFERRED: logging.WARNING, Status.ERROR: logging.ERROR}


def read_rows(config: Settings) -> Iterable[SheetRow]:
    if config.sheet_csv is not None:
        return read_csv(config.sheet_csv)
    from common.sheets_api import default_token, read_sheet

    return read_sheet(
        str(config.sheet_id),
        config.sheet_range,
        api_url=config.sheets_api_url,
        token=sheets_token(config, default_token),
    )


def sheets_token(config: Settings, credentials: Callable[[], str]) -> Callable[[], str]:
    """``SHEETS_ACCESS_TOKEN`` when set (the Sheets simulator), else the job's ``credentials``."""
    if config.sheets_access_token is None:
        return credentials
    token = config.sheets_access_token.get_secret_value()
    return lambda: token


@dataclass(slots=True)
class JobHooks:
    """Where each batch of results goes: Pub/Sub (deferred), the store, the logs."""

    config: Settings
    store: StateStore
    run_date: str
    publisher: object | None = None  # common.failures.FailurePublisher in production
    progress_interval: float = 5.0
    _last_progress: float = 0.0

    async def flush(self, results: Sequence[RowResult], progress: ShardProgress) -> None:
        deferred = [r for r in results if r.outcome.status is Status.DEFERRED]
        if deferred and self.publisher is not None:
            # Published before the outcomes are recorded: a crash in between leaves a message
            # whose replay finds the row unchanged, never a deferred row without a message.
            await asyncio.to_thread(self._publish, deferred)
        await asyncio.to_thread(
            self.store.record_outcomes, self.run_date, [r.outcome for r in results]
        )
        await asyncio.to_thread(self.store.ledger_put, [r.ledger for r in results if r.ledger])
        for r in results:
            o = r.outcome
            log_event(
                "row_outcome",
                f"row {o.row}: {o.status.value}",
                severity=_SEVERITY.get(o.status, logging.INFO),
                row=o.row,
                status=o.status.value,
                nik=o.nik_masked,
                reason=o.reason,
            )
        now = time.monotonic()
        if now - self._last_progress >= self.progress_interval or progress.done == progress.total:
            self._last_progress = now
            await asyncio.to_thread(self._progress, progress, False)

    def _publish(self, deferred: Sequence[RowResult]) -> None:
        rows = [(r.item, r.outcome.reason, r.attempts) for r in deferred]
        publish_items(self.config, self.run_date, rows, self.publisher)

    def _progress(self, progress: ShardProgress, finished: bool) -> None:
        self.store.put_progress(
            self.run_date,
            TaskProgress(
                task_index=self.config.task_index,
                execution=self.config.execution,
                total=progress.total,
                done=progress.done,
                counts=dict(progress.counts),
                updated_at=time.time(),
                finished=finished,
            ),
        )
        log_event(
            "task_progress",
            f"task {self.config.task_index}: {progress.done}/{progress.total} rows",
            done=progress.done,
            total=progress.total,
            counts=progress.counts,
            rows_per_second=round(progress.rate, 1),
        )


def run_task(config: Settings) -> int:
    """Run this task to the end; returns the process exit code."""
    store = open_store(config)
    try:
        return asyncio.run(_run_task(config, store))
    finally:
        store.close()


async def _run_task(config: Settings, store: StateStore) -> int:
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

    throttles = ThrottleLog()
    async with FhirClient(
        fhir_settings(config), on_retry=_log_retry, on_throttle=throttles
    ) as client:
        if index == 0:
            ended = await _start_run(config, store, run_date, client)
            if ended is not None:
                return ended
        items = await _wait_for_shard(config, store, run_date)
        if items is None:
            return EXIT_OK  # another execution owns the date (logged)
        if isinstance(items, int):
            return items
        progress = await _sync(config, store, run_date, client, items)
    final = await asyncio.to_thread(store.finish_task, run_date, execution, index, time.time())
    log_event(
        "task_finished",
        f"task {index} done: {progress.counts}",
        counts=progress.counts,
        total=progress.total,
        fhir_rate_limited=client.stats.rate_limited,  # 429 answers
        fhir_throttled=throttles.count,  # times they narrowed the window
        fhir_concurrency_limit=client.concurrency_limit,  # at the end
    )
    if final is not None:
        _log_run_finished(final)
        await asyncio.to_thread(write_officer_report, config, store, final)
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
        await _check_fhir_server(client)
        await asyncio.to_thread(_write_manifest, config, store, run_date)
    except (InputError, FhirServerUnfit) as exc:
        return await _fail_run(store, run_date, execution, str(exc))
    except Exception as exc:
        return await _fail_run(store, run_date, execution, _cause(exc), error=True)
    return None


async def _check_fhir_server(client: FhirClient, *, outage_is_fatal: bool = False) -> None:
    """Fail fast on a wrong base URL: ``FhirServerUnfit`` unless ``GET [base]/metadata`` shows
    FHIR R4 with Patient search and update.

    Only an answer is a verdict on the URL. Refused credentials, and a server that does not
    answer through the client's retries, are left to the rows with a warning: the rows meet
    them as before (deferred, then replayed), which heals an outage by itself, where a failed
    run would stop the other tasks for good (Cloud Run retries them at once; they would run out
    of retries before task 0's retry finds the registry back). ``outage_is_fatal`` (an
    operator's replay, who is there to try again) raises the ``FhirTransientError`` instead."""
    try:
        capabilities = await client.checked_capabilities()
    except (FhirAuthError, FhirTransientError) as exc:
        if outage_is_fatal and isinstance(exc, FhirTransientError):
            raise
        log_event(
            "fhir_unchecked",
            f"the FHIR server at {client.shown_base_url} could not be checked: {exc}",
            severity=logging.WARNING,
            reason=str(exc),
        )
    else:
        log_event(
            "fhir_checked",
            f"{client.shown_base_url}: FHIR {capabilities.fhir_version}, Patient search and update",
            fhir_version=capabilities.fhir_version,
            batch=capabilities.batch,
        )


async def _sync(
    config: Settings,
    store: StateStore,
    run_date: str,
    client: FhirClient,
    items: list[WorkItem],
) -> ShardProgress:
    """Sync this task's shard, renewing the run's lease meanwhile."""
    renewer = asyncio.create_task(_renew_lease(config, store, run_date))
    try:
        hooks = JobHooks(config, store, run_date, publisher=_publisher(config))
        registry = BatchingRegistry(client, config.fhir.batch_size, on_fallback=_log_batch_refused)
        progress = await sync_shard(
            items,
            registry,
            store,
            Ledger(ledger_key(config)),
            hooks,
            concurrency=registry.rows_in_flight(config.fhir.concurrency),
            fmt=config.phone_format,
        )
        await asyncio.to_thread(hooks._progress, progress, True)
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
    return progress


async def _fail_run(
    store: StateStore, run_date: str, execution: str, reason: str, *, error: bool = False
) -> int:
    """Mark the run failed and say why in a ``run_failed`` event; Cloud Run retries task 0.

    ``error``: the cause is not the input's fault as far as we know (an unexpected exception):
    the event says so, so on-call looks at the code and not at the sheet."""
    await asyncio.to_thread(store.fail_run, run_date, execution, reason, time.time())
    log_event(
        "run_failed",
        f"cannot start the run: {reason}",
        severity=logging.ERROR,
        status="failed",
        reason=reason,
        unexpected=error,
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


def _write_manifest(config: Settings, store: StateStore, run_date: str) -> None:
    from datetime import date, timedelta

    day = date.fromisoformat(run_date)
    first = lookback_start(day, config.lookback_days)
    window = DateWindow(first, day)
    read_at = read_stamp()  # taken before the read: a later read sees at least this sheet
    started = time.perf_counter()
    plan = plan_rows(read_rows(config), window)  # the rows are planned as they are read
    planned = time.perf_counter()
    shards: dict[int, list[WorkItem]] = {i: [] for i in range(config.task_count)}
    for c in plan.candidates:
        item = WorkItem(
            row=c.row,
            date=c.date.isoformat(),
            nik=c.nik,
            phone=c.phone.e164,
            assigned=c.phone.assigned,
            read_at=read_at,
        )
        shards[shard_of(c.nik, config.task_count)].append(item)
    # This read re-decides every row of its window: replays of older reads' rows become stale.
    # Noted before the manifest, so no run of this read can exist without it (a crash in
    # between only makes older reads' replays stale a little early: this run redoes them).
    store.note_read(
        read_at, [(first + timedelta(days=n)).isoformat() for n in range((day - first).days + 1)]
    )
    # Rows dated outside the window are counted, not recorded one by one (docs/decisions.md).
    outside = {Status.OTHER_DATE.value: len(plan.other_rows)} if plan.other_rows else {}
    store.write_manifest(run_date, config.execution, shards, plan.decided, outside)
    written = time.perf_counter()
    rejected = [o for o in plan.decided if o.status in SHEET_REJECTED]
    for o in rejected:  # one line per row, like the synced rows: the rows metric counts them
        log_event(
            "row_outcome",
            f"row {o.row}: {o.status.value}",
            severity=logging.WARNING,
            row=o.row,
            status=o.status.value,
            nik=o.nik_masked,
            reason=o.reason,
        )
    log_event(
        "manifest_written",
        f"{len(plan.candidates)} rows to sync, {len(plan.decided)} decided from the sheet"
        f" ({len(rejected)} rejected by the sheet rules), {len(plan.other_rows)} outside"
        " the window",
        candidates=len(plan.candidates),
        decided=len(plan.decided),
        outside_window=len(plan.other_rows),
        rejected=summarize(rejected),
        shard_sizes=[len(s) for s in shards.values()],
        window=[window.first.isoformat() if window.first else None, run_date],
        read_plan_seconds=round(planned - started, 3),
        manifest_seconds=round(written - planned, 3),
    )


async def _wait_for_shard(
    config: Settings, store: StateStore, run_date: str
) -> list[WorkItem] | int | None:
    """This task's shard once task 0 has written it; None if another execution owns the date."""
    deadline = time.monotonic() + config.manifest_timeout_seconds
    while True:
        items = await asyncio.to_thread(
            store.read_shard, run_date, config.execution, config.task_index
        )
        if items is not None:
            return items
        run = await asyncio.to_thread(store.get_run, run_date)
        # Another execution *running* under a live lease owns the date. A finished earlier run
        # does not count: our task 0 is about to take the date over for this rerun.
        if (
            run is not None
            and run.execution != config.execution
            and run.status is RunStatus.RUNNING
            and run.lease_until > time.time()
        ):
            log_event(
                "lock_held",
                f"{run_date} is being synced by {run.execution}; nothing to do",
                holder=run.execution,
            )
            return None
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


async def _renew_lease(config: Settings, store: StateStore, run_date: str) -> None:
    while True:
        await asyncio.sleep(config.lease_seconds / 3)
        held = await asyncio.to_thread(
            store.renew_lease, run_date, config.execution, config.lease_seconds, time.time()
        )
        if not held:
            log_event(
                "lease_lost", "another execution took over this date", severity=logging.WARNING
            )


def publish_items(
    config: Settings,
    run_date: str,
    rows: Sequence[tuple[WorkItem, str, int]],
    publisher: object | None = None,
    *,
    execution: str | None = None,
) -> None:
    """One Pub/Sub message per (row, reason, attempts) on FAILURE_TOPIC, for the replay function.

    ``execution`` is the run the rows belong to (default: this task's execution)."""
    from common.failures import FailureMessage, FailurePublisher, topic_path

    client = publisher if isinstance(publisher, FailurePublisher) else FailurePublisher()
    messages = [
        FailureMessage(
            run_date=run_date,
            execution=execution or config.execution,
            row=i.row,
            nik=i.nik,
            phone=i.phone,
            reason=reason,
            attempts=attempts,
            sheet_date=i.date,
            read_at=i.read_at,
        )
        for i, reason, attempts in rows
    ]
    client.publish_many(
        topic_path(str(config.google_cloud_project), str(config.failure_topic)), messages
    )


async def replay_locally(
    config: Settings, store: StateStore, run_date: str, items: Sequence[WorkItem]
) -> dict[str, int]:
    """Local mode of ``phonesync replay``: the replay function's path, run directly, after the
    job's check of the FHIR server (an operator's ``--fhir-url`` is the likeliest wrong one).
    Each row goes through the function's checks too: one that fails them is logged as
    ``replay_malformed`` and counted ``malformed``."""
    from common.replay import MalformedReplay, log_malformed, replay_item

    counts: dict[str, int] = {}
    ledger = Ledger(ledger_key(config))
    run = await asyncio.to_thread(store.get_run, run_date)
    execution = run.execution if run is not None else ""  # the items are its manifest's
    async with FhirClient(fhir_settings(config)) as client:
        await _check_fhir_server(client, outage_is_fatal=True)
        for item in items:
            try:
                result = await replay_item(
                    item, run_date, execution, client, store, ledger, config.phone_format
                )
            except MalformedReplay as exc:
                log_malformed(item.row, item.nik, exc)
                status = "malformed"
            else:
                status = result.outcome.status.value
            counts[status] = counts.get(status, 0) + 1
    return counts


def _publisher(config: Settings) -> object | None:
    if not config.failure_topic:
        return None  # local mode: deferred rows stay in the store for `phonesync replay`
    from common.failures import FailurePublisher

    return FailurePublisher()


def _log_retry(method: str, status: int, attempt: int) -> None:
    log_event(
        "fhir_retry",
        f"{method} answered {status or 'no response'}; retrying",
        severity=logging.WARNING,
        method=method,
        http_status=status,
        request_attempt=attempt,  # `attempt` is the task's (Cloud Run's), bound for every line
    )


class ThrottleLog:
    """``fhir_throttled`` warnings: the first narrowing of the window at once, then at most one
    line per ``every`` seconds (a server at its limit narrows it about once per Retry-After)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.count = 0
        self._logged = 0  # narrowings already reported
        self._last: float | None = None

    def __call__(self, limit: int, pause: float) -> None:
        self.count += 1
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        log_event(
            "fhir_throttled",
            f"the FHIR server answered 429: every request paused {pause:g} s, "
            f"then resumed one at a time, up to {limit} in flight",
            severity=logging.WARNING,
            limit=limit,
            pause_seconds=pause,
            narrowings=self.count - self._logged,  # since the last such line
        )
        self._logged = self.count


def _log_batch_refused(reason: str) -> None:
    log_event("fhir_batch_refused", reason, severity=logging.WARNING)


def write_officer_report(config: Settings, store: StateStore, run: RunState) -> None:
    """Replace the officers' report tab with the run's rows needing action (when configured).

    Never raises: a report that cannot be written must not fail (and so retry) a finished run.
    The outcome is logged (``report_written`` / ``report_failed``, counted by a log-based
    metric) and kept with the run for ``phonesync status``.
    """
    if not config.report_sheet_id:
        return
    from common.officer_report import report_values
    from common.sheets_api import replace_tab, write_token
    from jobs.operator import jakarta_time

    tab = config.report_sheet_tab
    try:
        outcomes = store.outcomes(run.run_date)
        needing = [o for o in outcomes if o.status in NEEDS_OFFICER]
        rows = read_rows(config) if needing else []  # the date and name as typed
        values = report_values(run.run_date, outcomes, rows, jakarta_time(time.time()))
        replace_tab(
            config.report_sheet_id,
            tab,
            values,
            api_url=config.sheets_api_url,
            token=sheets_token(config, write_token),
        )
    except Exception as exc:  # any failure: recorded below, the run stays as it finished
        detail = f"failed: {type(exc).__name__}: {exc}"
        log_event(
            "report_failed",
            f"the officers' report tab {tab!r} was not written: {exc}",
            severity=logging.ERROR,
            tab=tab,
            reason=str(exc),
        )
    else:
        detail = f"written: {len(needing)} row(s) to tab {tab!r} at {jakarta_time(time.time())}"
        log_event(
            "report_written",
            f"{len(needing)} row(s) to the officers' tab {tab!r}",
            tab=tab,
            rows=len(needing),
        )
    try:
        store.set_report(run.run_date, run.execution, detail)
    except Exception as exc:  # the tab's fate stays in the log line above
        log_event("report_unrecorded", str(exc), severity=logging.WARNING)


def _log_run_finished(run: RunState) -> None:
    """The run's summary line: its status, counts by status, and the rows needing an officer
    (``rejected``: by the sheet rules, by status; ``needs_officer``: those plus not_found and
    ambiguous)."""
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
    )
