"""The records a state store keeps. Plain data: backends translate them to rows or documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from common.outcomes import NEEDS_OFFICER, NOT_YET_APPLIED


class LockResult(StrEnum):
    ACQUIRED = "acquired"  # this execution now owns the run date (new, rerun, or lease taken over)
    RESUMED = "resumed"  # this execution already owned it (a retried task 0)
    HELD = "held"  # another live execution owns it: stop, do not overlap


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # finished, and nothing needs anyone
    NEEDS_ACTION = (
        "needs_action"  # finished; some rows need a field officer (invalid_*, not_found…)
    )
    PARTIAL = "partial"  # finished, but some rows are deferred (being replayed) or errored
    FAILED = "failed"  # the run could not proceed (e.g. the sheet could not be read)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A winning sheet row waiting for the registry. Holds PII: lives only in the manifest."""

    row: int
    date: str  # ISO date of the sheet row
    nik: str
    phone: str  # E.164
    assigned: bool = True  # False: number range not assigned to an operator (applied, warned)
    #: When task 0 read the sheet this row comes from (see :func:`read_stamp`).
    read_at: str = ""
    #: The row was waiting on a field officer since this date (ISO) when the run took it up
    #: again (see :class:`WaitingRow`); "" for any other row.
    since: str = ""


def read_stamp(moment: datetime | None = None) -> str:
    """The stamp of one read of the sheet: UTC, microseconds, fixed width.

    Stamps of the same form order as strings do; ``""`` (records written before stamps
    existed) sorts before every stamp. Row numbers and sheet dates order rows *within* one
    read; across reads, only these stamps say which is newer (docs/decisions.md, record 24).
    """
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """The number a patient holds as far as phonesync knows, keyed by HMAC(NIK); the number
    itself is hashed. ``run_date`` and ``row`` say which row applied it; ``read_at`` is the
    latest read of the sheet that applied or confirmed it.

    ``registry_version`` and ``registry_updated`` are the patient's ``meta.versionId`` and
    ``meta.lastUpdated`` as the registry answered phonesync's write (or the read that found the
    number already there): a later version tells a reconcile that another writer changed the
    patient since (docs/decisions.md, record 87). "" in entries written before they were kept.
    """

    key: str
    phone_hash: str
    run_date: str
    row: int
    applied_at: str
    read_at: str = ""
    registry_version: str = ""
    registry_updated: str = ""

    def read_after(self, read_at: str) -> bool:
        """Whether a later read of the sheet than ``read_at`` set or confirmed this entry."""
        return self.read_at > read_at


@dataclass(slots=True)
class RunState:
    run_date: str
    execution: str
    status: RunStatus
    task_count: int
    started_at: float
    lease_until: float
    finished_at: float | None = None
    manifest_ready: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    total_rows: int = 0
    reason: str = ""
    #: What became of the officers' report tab: "" (not written), "written: …" or "failed: …".
    report: str = ""
    #: The dates the run covers: ``window_first`` .. ``run_date`` ("" until task 0 chose them).
    window_first: str = ""
    #: Dates of the window before ``run_date`` that no finished run had covered (missed nights).
    caught_up: list[str] = field(default_factory=list)
    #: Dates no finished run covers even with this one (past CATCH_UP_DAYS): backfill them.
    unsynced: list[str] = field(default_factory=list)
    #: When the manifest (full NIKs and numbers) expires (Unix time; None until it is written):
    #: after it the manifest reads as absent and the store deletes it (MANIFEST_RETENTION_DAYS).
    manifest_expires: float | None = None

    def manifest_expired(self, now: float) -> bool:
        return self.manifest_expires is not None and self.manifest_expires <= now

    @property
    def finished(self) -> bool:
        """The run ended with every row decided: its window's dates are covered."""
        return self.status in FINISHED


@dataclass(slots=True)
class ShardState:
    """One shard of a run's manifest: who holds it, until when, and how far it got.

    A shard is a lease a task claims (``owner``, ``lease_until``), syncs while renewing the
    lease, then finishes. The owner is the task's index, not its attempt: a retried task
    resumes what its dead attempt held. A shard whose holder stopped renewing is free for any
    task once its lease has expired, so no shard depends on one task's survival."""

    shard: int
    execution: str
    total: int = 0
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    updated_at: float = 0.0
    finished: bool = False
    owner: int | None = None  # the index of the task holding it; None: never claimed
    lease_until: float = 0.0

    def claimable_by(self, task_index: int, now: float) -> bool:
        """Unfinished, and unclaimed, already this task's, or its holder's lease expired."""
        return not self.finished and (
            self.owner is None or self.owner == task_index or self.lease_until <= now
        )


#: Statuses of a run that ran to its end (``failed`` did not; ``running`` has not yet).
FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.NEEDS_ACTION, RunStatus.PARTIAL})


@dataclass(frozen=True, slots=True)
class WaitingRow:
    """A sheet row waiting on a field officer (``NEEDS_OFFICER``), as the latest read of the
    sheet that decided it saw it. Each night takes it up again while its date is recent enough
    (``ACTION_DAYS``): the row is found again by its number or its NIK (``nik_key``, the
    ledger's HMAC: no NIK is kept here), and its outcome moves from ``run_date``'s run to the
    night's. Kept until the row is applied, replaced or out of reach."""

    sheet_date: str  # ISO; "" when the row's date cannot be read
    row: int
    nik_key: str  # "" when the NIK is invalid
    nik_masked: str
    status: str
    since: str  # ISO date of the run that first found it waiting
    run_date: str  # the run holding its outcome
    execution: str
    read_at: str

    @property
    def key(self) -> str:
        """Its identity in the store: where the row was in the sheet (date and row number)."""
        return waiting_key(self.sheet_date, self.row)


def waiting_key(sheet_date: str, row: int) -> str:
    return f"{sheet_date or 'undated'}-{row:07d}"


def final_status(counts: dict[str, int]) -> RunStatus:
    """What a finished run with these counts by status means for the people around it.

    ``partial`` while any row is deferred (in the replay function's hands) or errored (on-call),
    else ``needs_action`` while any row needs a field officer, else ``succeeded``. A replay that
    lands moves a ``partial`` run on to one of the other two.
    """
    if any(counts.get(s) for s in NOT_YET_APPLIED):
        return RunStatus.PARTIAL
    if any(counts.get(s) for s in NEEDS_OFFICER):
        return RunStatus.NEEDS_ACTION
    return RunStatus.SUCCEEDED


def moved_counts(counts: dict[str, int], old: str | None, new: str) -> dict[str, int]:
    """``counts`` with one row moved from status ``old`` (None: a row not counted yet) to ``new``."""
    out = dict(counts)
    if old is not None and out.get(old):
        out[old] -= 1
        if not out[old]:
            del out[old]
    out[new] = out.get(new, 0) + 1
    return out
