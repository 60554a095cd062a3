"""The production state store on Firestore (native mode).

Layout (every document written by a run carries ``expire_at`` for the TTL policy):

- ``executions/{execution}``: the run date the execution works on (created once, first wins).
- ``runs/{run_date}``: the lock and the run's state; changed only in transactions.
- ``runs/{run_date}/manifest/{execution}-{task:04d}-{chunk:04d}``: a shard's work, in chunks of
  2,000 compact items (well under the 1 MiB document limit). The run document records each
  shard's chunk count and flips ``manifest_ready`` only after every chunk is written, so a
  reader fetches exact document ids — no query, no composite index. The items hold full NIKs
  and numbers: their ``expire_at`` is ``manifest_retention_days`` away (the run document's
  ``manifest_expires``), not ``retention_days``, and a reader treats them as gone from then on
  (the TTL deletes within a day or so of it).
- ``runs/{run_date}/rows/{row:07d}``: one outcome per sheet row, written with a BulkWriter
  (never a round trip per row). Winning the lock (ACQUIRED) clears the date's rows, tasks and
  manifest after the transaction; a retried task 0 (RESUMED, manifest not ready yet) clears
  them again, in case the first attempt died between the two.
- ``runs/{run_date}/tasks/{shard}``: one document per shard (no shared hot document): its
  claim (``owner``: the holding task's index, ``lease_until``, ``finished``) and its progress.
  Claims and finishing are transactions on that document (claims also read the run document);
  progress writes replace only the progress fields. The collection kept its name from when a
  shard belonged to one task for good (the TTL policy is per collection group).
- ``ledger/{hmac(nik)}``: the last applied number's hash, run date and row, the latest read
  of the sheet that applied or confirmed it, and the patient's version as the registry answered.
- ``sheet_reads/{sheet_date}``: the latest read of the sheet that re-decided that date's rows.
- ``reconciles/{id}`` and below: reconciles and their drift rows (``_firestore_reconciles``).
- ``waiting/{sheet_date}-{row:07d}``: a row waiting on a field officer (``WaitingRow``: no NIK,
  its HMAC), and which run holds its outcome.

Finishing: a task flags the shard it holds finished, then reads every shard's document; the
call that sees every shard finished claims the run (``finalizing_task``: its task index) in a
transaction on the run document alone, so exactly one caller closes the run even when several
finish at once, and tasks never lock each other's documents. The claimant counts the outcomes
outside a transaction (20,000 documents in one would be slow and contended), then writes status
and counts in a second transaction that counts again if the run document changed meanwhile (a
replay moved a row). A crash between claim and close is recovered by Cloud Run's retry of the
same task, which finds every shard finished and its own claim, and closes the run.

Bulk writes are checked. A BulkWriter silently drops a write whose retries ran out, and a whole
batch whose request raised; here only writes refused with a retryable gRPC code are retried
(in a later round, after the common backoff of ``common.retry``), every landed write is
counted, and a shortfall raises :class:`StoreWriteError` (the task fails, Cloud Run retries
it). Writes to one document within a call are collapsed first: batches go out in parallel,
in no set order.

Ledger writes are batched reads then a BulkWriter, not a transaction per entry. Two writers of
one key could interleave between the read and the write (milliseconds): each NIK belongs to
exactly one shard, so only a replay racing a later night's task for the same patient could,
and the worst case is an older entry kept, which costs one FHIR check on the next run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.cloud_access import open_google_client
from common.errors import PhonesyncError
from common.outcomes import RowOutcome, Status, summarize
from common.retry import backoff_delay, retryable_grpc
from common.store._firestore_reconciles import FirestoreReconciles
from common.store._model import (
    LedgerEntry,
    LockResult,
    RunState,
    RunStatus,
    ShardState,
    WaitingRow,
    WorkItem,
    final_status,
    moved_counts,
)
from common.store._transactions import transactional

CHUNK = 2_000
TRANSACTION_ATTEMPTS = 30
BULK_ATTEMPTS = 6  # per write, retryable gRPC codes only
FINALIZE_ATTEMPTS = 5
#: Backoff (``common.retry.backoff_delay``) between rounds of bulk writes and between counts of
#: a closing run: base and cap, in seconds.
_BULK_BACKOFF_BASE, _BULK_BACKOFF_CAP = 1.0, 10.0
_FINALIZE_BACKOFF_BASE, _FINALIZE_BACKOFF_CAP = 0.1, 1.0
_READ_BATCH = 300
#: Rows recorded into a run per transaction (each one write, plus the run's): under the
#: 500 writes a transaction may hold.
_REPLAY_BATCH = 200
#: A write to send again: its document, its data (None: a delete) and why it failed.
_Retry = tuple[Any, dict[str, Any] | None, str]


class StoreWriteError(PhonesyncError):
    """Some Firestore writes did not land (the task should fail and be retried)."""


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _data(snapshot: Any) -> dict[str, Any]:
    data: dict[str, Any] = snapshot.to_dict() or {}
    return data


class FirestoreStore(FirestoreReconciles):
    """:class:`~common.store.StateStore` on Firestore.

    ``rng`` and ``sleep`` draw and wait out the backoff between retries (tests pass their own).
    """

    def __init__(
        self,
        project: str,
        database: str = "(default)",
        *,
        client: Any = None,
        retention_days: int = 400,
        manifest_retention_days: int = 3,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = client or open_google_client(
            "Firestore",
            lambda: firestore.Client(project=project, database=database),
            emulator="FIRESTORE_EMULATOR_HOST",
        )
        self.retention = timedelta(days=retention_days)
        self.manifest_retention_days = manifest_retention_days
        self.clock = clock
        self._rng, self._sleep = rng, sleep

    # -- helpers ----------------------------------------------------------------------------
    def _transaction(self) -> Any:
        """Every task of an execution touches ``runs/{date}`` (leases, finishing): under that
        contention the client's default of 5 attempts, retried without backoff, can run out."""
        return self.db.transaction(max_attempts=TRANSACTION_ATTEMPTS)

    def _expire(self) -> datetime:
        return datetime.now(UTC) + self.retention

    def _run(self, run_date: str) -> Any:
        return self.db.collection("runs").document(run_date)

    def _sub(self, run_date: str, name: str) -> Any:
        return self._run(run_date).collection(name)

    def _bulk(self, ops: Iterable[tuple[Any, dict[str, Any] | None]]) -> None:
        """Write (ref, data) pairs through a BulkWriter; data None deletes the document.

        A write refused with a retryable gRPC code goes again in a later round, after the
        common backoff, ``BULK_ATTEMPTS`` times in all. Raises :class:`StoreWriteError` unless
        every write landed.
        """
        submitted, landed, again, failures = self._bulk_round(ops)
        for retry in range(BULK_ATTEMPTS - 1):
            if not again:
                break
            self._sleep(backoff_delay(retry, _BULK_BACKOFF_BASE, _BULK_BACKOFF_CAP, rng=self._rng))
            _, more, again, refused = self._bulk_round((ref, data) for ref, data, _ in again)
            landed += more
            failures += refused
        failures += [reason for _, _, reason in again]
        if landed != submitted:
            raise StoreWriteError(
                f"{submitted - landed} of {submitted} Firestore writes failed"
                + (f" (first: {failures[0][:300]})" if failures else "")
            )

    def _bulk_round(
        self, ops: Iterable[tuple[Any, dict[str, Any] | None]]
    ) -> tuple[int, int, list[_Retry], list[str]]:
        """One BulkWriter over ``ops``: how many were sent and landed, the writes to retry, and
        why the others failed. The BulkWriter retries nothing itself, and a whole batch whose
        request raised (which it drops silently) is counted as failed."""
        lock = threading.Lock()
        landed = 0
        again: list[_Retry] = []
        failures: list[str] = []

        def on_result(ref: Any, result: Any, writer: Any) -> None:
            nonlocal landed
            with lock:
                landed += 1

        def on_error(failure: Any, writer: Any) -> bool:
            reason = f"code {failure.code}: {failure.message}"
            operation = failure.operation  # a set (document_data) or a delete
            with lock:
                if retryable_grpc(failure.code):
                    data = getattr(operation, "document_data", None)
                    again.append((operation.reference, data, reason))
                else:
                    failures.append(reason)
            return False

        writer = self.db.bulk_writer()
        writer.on_write_result(on_result)
        writer.on_write_error(on_error)
        send = getattr(writer, "_send", None)
        if send is not None:  # a failed batch RPC is otherwise lost with its reason

            def checked_send(batch: Any) -> Any:
                try:
                    return send(batch)
                except Exception as exc:
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    raise

            writer._send = checked_send  # type: ignore[method-assign]
        submitted = 0
        try:
            for ref, data in ops:
                if data is not None:
                    writer.set(ref, data)
                else:
                    writer.delete(ref)
                submitted += 1
        finally:
            writer.close()
        return submitted, landed, again, failures

    def _clear(self, run_date: str) -> None:
        refs = [
            ref
            for name in ("rows", "tasks", "manifest")
            for ref in self._sub(run_date, name).list_documents()
        ]
        if refs:
            self._bulk((ref, None) for ref in refs)

    @staticmethod
    def _state(data: Mapping[str, Any]) -> RunState:
        window = data.get("window") or {}
        return RunState(
            run_date=data["run_date"],
            execution=data["execution"],
            status=RunStatus(data["status"]),
            task_count=int(data["task_count"]),
            started_at=float(data["started_at"]),
            lease_until=float(data["lease_until"]),
            finished_at=data.get("finished_at"),
            manifest_ready=bool(data.get("manifest_ready")),
            counts=dict(data.get("counts") or {}),
            total_rows=int(data.get("total_rows") or 0),
            reason=data.get("reason") or "",
            report=data.get("report") or "",
            window_first=window.get("first", ""),
            caught_up=list(window.get("caught_up", [])),
            unsynced=list(window.get("unsynced", [])),
            manifest_expires=_timestamp(data.get("manifest_expires")),
        )

    # -- execution date ---------------------------------------------------------------------
    def bind_execution_date(self, execution: str, run_date: str) -> str:
        ref = self.db.collection("executions").document(execution)
        try:
            ref.create({"run_date": run_date, "expire_at": self._expire()})
            return run_date
        except gexc.AlreadyExists:
            return str(ref.get().get("run_date"))

    # -- lock -------------------------------------------------------------------------------
    def acquire_run(
        self, run_date: str, execution: str, task_count: int, lease_seconds: float, now: float
    ) -> LockResult:
        ref = self._run(run_date)

        @transactional
        def attempt(transaction: Any) -> tuple[LockResult, bool]:
            """The result, and whether the date's rows, tasks and manifest need clearing."""
            snap = ref.get(transaction=transaction)
            if snap.exists:
                data = _data(snap)
                if data["execution"] == execution:
                    update: dict[str, Any] = {"lease_until": now + lease_seconds}
                    if data["status"] == RunStatus.FAILED:
                        update.update(status=RunStatus.RUNNING.value, finished_at=None, reason="")
                    transaction.update(ref, update)
                    return LockResult.RESUMED, not data.get("manifest_ready")
                if data["status"] == RunStatus.RUNNING and data["lease_until"] > now:
                    return LockResult.HELD, False
            transaction.set(
                ref,
                {
                    "run_date": run_date,
                    "execution": execution,
                    "status": RunStatus.RUNNING.value,
                    "task_count": task_count,
                    "started_at": now,
                    "lease_until": now + lease_seconds,
                    "finished_at": None,
                    "manifest_ready": False,
                    "manifest_expires": None,
                    "counts": {},
                    "total_rows": 0,
                    "reason": "",
                    "shard_chunks": {},
                    "counted": {},
                    "window": {},
                    "finalizing_task": None,
                    "failures": 0,
                    "expire_at": self._expire(),
                },
            )
            return LockResult.ACQUIRED, True

        result: LockResult
        result, clear = attempt(self._transaction())
        if clear:
            # Outside the transaction: the lock is ours now, and 20,000 deletes do not fit in one.
            # Nothing of this execution is lost: tasks wait for the manifest before writing.
            self._clear(run_date)
        return result

    def renew_lease(self, run_date: str, execution: str, lease_seconds: float, now: float) -> bool:
        ref = self._run(run_date)

        @transactional
        def attempt(transaction: Any) -> bool:
            snap = ref.get(transaction=transaction)
            if not snap.exists or snap.get("execution") != execution:
                return False
            transaction.update(
                ref, {"lease_until": max(snap.get("lease_until"), now + lease_seconds)}
            )
            return True

        return bool(attempt(self._transaction()))

    def get_run(self, run_date: str) -> RunState | None:
        snap = self._run(run_date).get()
        return self._state(_data(snap)) if snap.exists else None

    def runs_since(self, first: str) -> list[RunState]:
        query = self.db.collection("runs").where(filter=FieldFilter("run_date", ">=", first))
        runs = [self._state(_data(snap)) for snap in query.stream()]
        return sorted(runs, key=lambda run: run.run_date)

    def set_window(
        self,
        run_date: str,
        execution: str,
        first: str,
        caught_up: Sequence[str],
        unsynced: Sequence[str],
    ) -> None:
        ref = self._run(run_date)
        window = {"first": first, "caught_up": list(caught_up), "unsynced": list(unsynced)}

        @transactional
        def attempt(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            if snap.exists and snap.get("execution") == execution:
                transaction.update(ref, {"window": window})

        attempt(self._transaction())

    def fail_run(self, run_date: str, execution: str, reason: str, now: float) -> int:
        ref = self._run(run_date)

        @transactional
        def attempt(transaction: Any) -> int:
            snap = ref.get(transaction=transaction)
            if not snap.exists or snap.get("execution") != execution:
                return 0
            failures = int(_data(snap).get("failures") or 0) + 1
            transaction.update(
                ref,
                {
                    "status": RunStatus.FAILED.value,
                    "reason": reason,
                    "finished_at": now,
                    "failures": failures,
                },
            )
            return failures

        failures: int = attempt(self._transaction())
        return failures

    def set_report(self, run_date: str, execution: str, report: str) -> None:
        ref = self._run(run_date)

        @transactional
        def attempt(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            if snap.exists and snap.get("execution") == execution:
                transaction.update(ref, {"report": report})

        attempt(self._transaction())

    # -- manifest ---------------------------------------------------------------------------
    def write_manifest(
        self,
        run_date: str,
        execution: str,
        shards: Mapping[int, Sequence[WorkItem]],
        decided: int,
        counted: Mapping[str, int] | None = None,
    ) -> None:
        counted = dict(counted or {})
        # Full NIKs and numbers: the manifest's own, short retention (not the run's).
        expire = datetime.fromtimestamp(self.clock(), UTC) + timedelta(
            days=self.manifest_retention_days
        )
        chunks: dict[str, int] = {}
        ops: list[tuple[Any, dict[str, Any] | None]] = []
        for index, items in shards.items():
            parts = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
            chunks[str(index)] = len(parts)
            for number, part in enumerate(parts):
                ref = self._sub(run_date, "manifest").document(
                    f"{execution}-{index:04d}-{number:04d}"
                )
                data = {
                    "execution": execution,
                    "task_index": index,
                    "chunk": number,
                    # one read per manifest: its stamp is stored once per chunk, not per item
                    "read_at": part[0].read_at if part else "",
                    "items": [
                        {"r": i.row, "d": i.date, "n": i.nik, "p": i.phone, "a": i.assigned}
                        | ({"s": i.since} if i.since else {})
                        for i in part
                    ],
                    "expire_at": expire,
                }
                ops.append((ref, data))
        self._bulk(ops)
        total = decided + sum(len(items) for items in shards.values()) + sum(counted.values())
        ref = self._run(run_date)

        @transactional
        def mark_ready(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            if snap.exists and snap.get("execution") == execution:
                transaction.update(
                    ref,
                    {
                        "manifest_ready": True,
                        "manifest_expires": expire,
                        "total_rows": total,
                        "shard_chunks": chunks,
                        "counted": counted,
                    },
                )

        mark_ready(self._transaction())

    def read_shard(self, run_date: str, execution: str, shard: int) -> list[WorkItem] | None:
        snap = self._run(run_date).get()
        if not snap.exists:
            return None
        data = _data(snap)
        if data["execution"] != execution or not data.get("manifest_ready"):
            return None
        expires = _timestamp(data.get("manifest_expires"))
        if expires is not None and expires <= self.clock():
            return None  # expired: the TTL policy deletes its chunks
        count = int((data.get("shard_chunks") or {}).get(str(shard), 0))
        refs = [
            self._sub(run_date, "manifest").document(f"{execution}-{shard:04d}-{n:04d}")
            for n in range(count)
        ]
        docs = sorted(
            (_data(d) for d in self.db.get_all(refs) if d.exists), key=lambda d: d["chunk"]
        )
        return [
            WorkItem(
                row=i["r"],
                date=i["d"],
                nik=i["n"],
                phone=i["p"],
                assigned=i["a"],
                read_at=d.get("read_at", ""),
                since=i.get("s", ""),
            )
            for d in docs
            for i in d["items"]
        ]

    # -- outcomes ---------------------------------------------------------------------------
    def _row_data(self, outcome: RowOutcome, expire: datetime) -> dict[str, Any]:
        return {
            "row": outcome.row,
            "status": outcome.status.value,
            "reason": outcome.reason,
            "patient_id": outcome.patient_id,
            "nik_masked": outcome.nik_masked,
            "warning": outcome.warning,
            "since": outcome.since,
            "expire_at": expire,
        }

    def record_outcomes(self, run_date: str, outcomes: Sequence[RowOutcome]) -> None:
        if not outcomes:
            return
        rows = self._sub(run_date, "rows")
        expire = self._expire()
        latest = {
            o.row: o for o in outcomes
        }  # the later outcome of a row wins, as the contract says
        self._bulk(
            (rows.document(f"{o.row:07d}"), self._row_data(o, expire)) for o in latest.values()
        )

    def outcomes(
        self, run_date: str, statuses: Collection[Status] | None = None
    ) -> list[RowOutcome]:
        query = self._sub(run_date, "rows")
        if statuses is not None:
            if not statuses:
                return []
            query = query.where(filter=FieldFilter("status", "in", [s.value for s in statuses]))
        out = []
        for snap in query.stream():
            d = snap.to_dict()
            out.append(
                RowOutcome(
                    d["row"],
                    Status(d["status"]),
                    d["reason"],
                    d.get("patient_id"),
                    d["nik_masked"],
                    d["warning"],
                    d.get("since", ""),
                )
            )
        return sorted(out, key=lambda o: o.row)

    def record_replay(
        self, run_date: str, execution: str, outcomes: Sequence[RowOutcome], now: float
    ) -> RunState | None:
        latest = list({o.row: o for o in outcomes}.values())  # a row's later outcome wins
        state: RunState | None = None
        for start in range(0, max(len(latest), 1), _REPLAY_BATCH):
            state = self._record_replay(run_date, execution, latest[start : start + _REPLAY_BATCH])
            if state is None:
                return None
        return state

    def _record_replay(
        self, run_date: str, execution: str, outcomes: Sequence[RowOutcome]
    ) -> RunState | None:
        """One transaction: the run and the rows' previous outcomes read, all written."""
        run_ref = self._run(run_date)
        rows = self._sub(run_date, "rows")
        row_refs = [rows.document(f"{o.row:07d}") for o in outcomes]
        expire = self._expire()

        @transactional
        def attempt(transaction: Any) -> RunState | None:
            run = run_ref.get(transaction=transaction)
            if not run.exists or run.get("execution") != execution:
                return None
            previous = {
                snap.id: snap.get("status") for snap in transaction.get_all(row_refs) if snap.exists
            }
            data = _data(run)
            counts = dict(data.get("counts") or {})
            for outcome, ref in zip(outcomes, row_refs, strict=True):
                counts = moved_counts(counts, previous.get(ref.id), outcome.status.value)
                transaction.set(ref, self._row_data(outcome, expire))
            update: dict[str, Any] = {"counts": counts}
            if data.get("finished_at") is not None:
                update["status"] = final_status(counts).value
            transaction.update(run_ref, update)
            return self._state({**data, **update})

        result: RunState | None = attempt(self._transaction())
        return result

    # -- shards -----------------------------------------------------------------------------
    def claim_shard(
        self,
        run_date: str,
        execution: str,
        shard: int,
        task_index: int,
        lease_seconds: float,
        now: float,
    ) -> bool:
        run_ref, ref = self._run(run_date), self._sub(run_date, "tasks").document(str(shard))

        @transactional
        def attempt(transaction: Any) -> bool:
            run = run_ref.get(transaction=transaction)
            if (
                not run.exists
                or run.get("execution") != execution
                or run.get("status") != RunStatus.RUNNING
            ):
                return False
            snap = ref.get(transaction=transaction)
            current = self._shard(snap) if snap.exists else None
            claim = {"owner": task_index, "lease_until": now + lease_seconds}
            if current is not None and current.execution == execution:
                if not current.claimable_by(task_index, now):
                    return False
                transaction.update(ref, claim)
                return True
            transaction.set(  # unclaimed (a document of another execution counts as none)
                ref,
                {
                    **asdict(ShardState(shard, execution, updated_at=now)),
                    **claim,
                    "expire_at": self._expire(),
                },
            )
            return True

        return bool(attempt(self._transaction()))

    def renew_shard(
        self,
        run_date: str,
        execution: str,
        shard: int,
        task_index: int,
        lease_seconds: float,
        now: float,
    ) -> bool:
        ref = self._sub(run_date, "tasks").document(str(shard))

        @transactional
        def attempt(transaction: Any) -> bool:
            snap = ref.get(transaction=transaction)
            current = self._shard(snap) if snap.exists else None
            if current is None or current.execution != execution or current.owner != task_index:
                return False
            transaction.update(ref, {"lease_until": max(current.lease_until, now + lease_seconds)})
            return True

        return bool(attempt(self._transaction()))

    def put_progress(self, run_date: str, progress: ShardState) -> None:
        data = {
            "shard": progress.shard,
            "execution": progress.execution,
            "total": progress.total,
            "done": progress.done,
            "counts": progress.counts,
            "updated_at": progress.updated_at,
            "expire_at": self._expire(),
        }
        # Only these fields, each replaced whole (``merge=True`` would merge ``counts`` key
        # by key); the claim fields stay as the claim wrote them.
        self._sub(run_date, "tasks").document(str(progress.shard)).set(data, merge=list(data))

    @staticmethod
    def _shard(snap: Any) -> ShardState:
        d = _data(snap)
        return ShardState(
            shard=int(snap.id),
            execution=d.get("execution", ""),
            total=int(d.get("total") or 0),
            done=int(d.get("done") or 0),
            counts=dict(d.get("counts") or {}),
            updated_at=float(d.get("updated_at") or 0.0),
            finished=bool(d.get("finished")),
            owner=d.get("owner"),
            lease_until=float(d.get("lease_until") or 0.0),
        )

    def shard_states(self, run_date: str) -> list[ShardState]:
        shards = [self._shard(snap) for snap in self._sub(run_date, "tasks").stream()]
        return sorted(shards, key=lambda s: s.shard)

    def finish_shard(
        self, run_date: str, execution: str, shard: int, task_index: int, now: float
    ) -> RunState | None:
        ref = self._sub(run_date, "tasks").document(str(shard))

        @transactional
        def mark(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            current = self._shard(snap) if snap.exists else None
            if (
                current is not None
                and current.execution == execution
                and current.owner == task_index
                and not current.finished
            ):
                transaction.update(ref, {"finished": True, "updated_at": now})

        mark(self._transaction())
        return self.close_run(run_date, execution, task_index, now)

    def close_run(
        self, run_date: str, execution: str, task_index: int, now: float
    ) -> RunState | None:
        run_ref = self._run(run_date)
        tasks = self._sub(run_date, "tasks")
        # Strong reads, outside any transaction: whichever task marked a shard finished last
        # sees every shard finished here, since all the other marks were written before.
        run = run_ref.get()
        data = _data(run) if run.exists else {}
        if data.get("execution") != execution or data.get("status") != RunStatus.RUNNING:
            return None
        task_count = int(data["task_count"])
        refs = [tasks.document(str(i)) for i in range(task_count)]
        finished = sum(
            1
            for snap in self.db.get_all(refs)
            if snap.exists and snap.get("finished") and snap.get("execution") == execution
        )
        if finished < task_count:
            return None

        @transactional
        def claim(transaction: Any) -> bool:
            """Only the run document is in the transaction: exactly one caller claims it."""
            snap = run_ref.get(transaction=transaction)
            current = _data(snap) if snap.exists else {}
            if current.get("execution") != execution or current.get("status") != RunStatus.RUNNING:
                return False
            if current.get("finalizing_task") not in (None, task_index):
                return False
            transaction.update(run_ref, {"finalizing_task": task_index})
            return True

        if not claim(self._transaction()):
            return None
        return self._close_run(run_date, execution, task_index, now)

    def _close_run(
        self, run_date: str, execution: str, task_index: int, now: float
    ) -> RunState | None:
        """Give the claimed run its final status and counts, recounted if it moved meanwhile."""
        ref = self._run(run_date)

        @transactional
        def close(
            transaction: Any, seen: Any, outcomes: list[RowOutcome], force: bool
        ) -> tuple[bool, RunState | None]:
            snap = ref.get(transaction=transaction)
            data = _data(snap) if snap.exists else {}
            if (
                data.get("execution") != execution
                or data.get("status") != RunStatus.RUNNING
                or data.get("finalizing_task") != task_index
            ):
                return True, None  # taken over, failed or closed meanwhile: not ours to close
            if snap.update_time != seen and not force:
                return False, None  # e.g. a replay moved a row while we counted: count again
            counts = summarize(outcomes, data.get("counted"))  # rows without records included
            update = {"status": final_status(counts).value, "counts": counts, "finished_at": now}
            transaction.update(ref, update)
            return True, self._state({**data, **update})

        for attempt in range(FINALIZE_ATTEMPTS):
            if attempt:  # the run moved while we counted: let a burst of replays land first
                self._sleep(
                    backoff_delay(
                        attempt - 1, _FINALIZE_BACKOFF_BASE, _FINALIZE_BACKOFF_CAP, rng=self._rng
                    )
                )
            seen = ref.get().update_time
            outcomes = self.outcomes(run_date)
            done: bool
            state: RunState | None
            last = attempt == FINALIZE_ATTEMPTS - 1
            done, state = close(self._transaction(), seen, outcomes, last)
            if done:
                return state
        return None  # unreachable: the last attempt always closes

    # -- ledger -----------------------------------------------------------------------------
    def ledger_get(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        ledger = self.db.collection("ledger")
        found: dict[str, LedgerEntry] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _READ_BATCH):
            refs = [ledger.document(k) for k in unique[start : start + _READ_BATCH]]
            for snap in self.db.get_all(refs):
                if snap.exists:
                    d = _data(snap)
                    found[snap.id] = LedgerEntry(
                        snap.id,
                        d["phone_hash"],
                        d["run_date"],
                        d["row"],
                        d["applied_at"],
                        d.get("read_at", ""),
                        d.get("registry_version", ""),
                        d.get("registry_updated", ""),
                    )
        return found

    def ledger_put(self, entries: Sequence[LedgerEntry]) -> None:
        if not entries:
            return
        existing = self.ledger_get([e.key for e in entries])
        latest: dict[str, LedgerEntry] = {}
        for entry in entries:
            current = latest.get(entry.key) or existing.get(entry.key)
            if current is None or not current.read_after(entry.read_at):
                latest[entry.key] = entry
        ledger = self.db.collection("ledger")
        expire = self._expire()
        self._bulk(
            (
                ledger.document(e.key),
                {
                    "phone_hash": e.phone_hash,
                    "run_date": e.run_date,
                    "row": e.row,
                    "applied_at": e.applied_at,
                    "read_at": e.read_at,
                    "registry_version": e.registry_version,
                    "registry_updated": e.registry_updated,
                    "expire_at": expire,
                },
            )
            for e in latest.values()
            if existing.get(e.key) != e
        )

    # -- reads of the sheet -----------------------------------------------------------------
    def note_read(self, read_at: str, sheet_dates: Sequence[str]) -> None:
        refs = [self.db.collection("sheet_reads").document(day) for day in sheet_dates]
        expire = self._expire()

        @transactional
        def attempt(transaction: Any) -> None:
            snaps = list(transaction.get_all(refs)) if refs else []
            known = {s.id: _data(s).get("read_at", "") for s in snaps if s.exists}
            for ref in refs:
                if known.get(ref.id, "") < read_at:
                    transaction.set(ref, {"read_at": read_at, "expire_at": expire})

        attempt(self._transaction())

    def last_read(self, sheet_date: str) -> str:
        snap = self.db.collection("sheet_reads").document(sheet_date).get()
        return str(_data(snap).get("read_at", "")) if snap.exists else ""

    # -- rows waiting on a field officer ------------------------------------------------------
    def waiting_rows(self) -> list[WaitingRow]:
        rows = [_waiting_row(_data(snap)) for snap in self.db.collection("waiting").stream()]
        return sorted(rows, key=lambda w: w.key)

    def update_waiting(self, put: Sequence[WaitingRow] = (), drop: Sequence[str] = ()) -> None:
        waiting = self.db.collection("waiting")
        if drop:
            self._bulk((waiting.document(key), None) for key in dict.fromkeys(drop))
        latest: dict[str, WaitingRow] = {}
        for row in put:  # of one key, the later read's; the earlier since of the two
            latest[row.key] = _merged(latest.get(row.key), row)
        if not latest:
            return
        refs = [waiting.document(key) for key in latest]
        for snap in self.db.get_all(refs):
            if snap.exists:
                latest[snap.id] = _merged(_waiting_row(_data(snap)), latest[snap.id])
        expire = self._expire()
        self._bulk(
            (
                waiting.document(key),
                {
                    "sheet_date": w.sheet_date,
                    "row": w.row,
                    "nik_key": w.nik_key,
                    "nik_masked": w.nik_masked,
                    "status": w.status,
                    "since": w.since,
                    "run_date": w.run_date,
                    "execution": w.execution,
                    "read_at": w.read_at,
                    "expire_at": expire,
                },
            )
            for key, w in latest.items()
        )

    def close(self) -> None:
        self.db.close()


def _waiting_row(d: Mapping[str, Any]) -> WaitingRow:
    """A ``waiting/{key}`` document as the row it stores."""
    return WaitingRow(
        d["sheet_date"],
        int(d["row"]),
        d["nik_key"],
        d["nik_masked"],
        d["status"],
        d["since"],
        d["run_date"],
        d["execution"],
        d["read_at"],
    )


def _merged(stored: WaitingRow | None, new: WaitingRow) -> WaitingRow:
    """What is kept of a waiting row written again: a stored one from a later read stays as it
    is; otherwise the new one, with the earlier ``since`` of the two."""
    if stored is None:
        return new
    if stored.read_at > new.read_at:
        return stored
    return replace(new, since=min(stored.since, new.since))
