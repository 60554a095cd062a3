"""What a reconcile finds: the closed set of drift classes and the records a store keeps of it.

A reconcile compares, for every NIK whose newest sheet row falls in its window, the number the
sheet gives with the mobile number the registry holds (``common/reconcile.py``). Each NIK ends in
one :class:`DriftClass`; the NIKs that are not ``in_sync`` are kept as :class:`DriftRow` records
(masked NIK only) under their :class:`ReconcileRun`, which ``phonesync drift`` shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

#: ``--max-repairs`` when not given: a bound on what one command may write, raised on purpose.
DEFAULT_MAX_REPAIRS = 500
#: The window's length when only its end is given (the weekly schedule's window).
DEFAULT_DAYS = 28


class DriftClass(StrEnum):
    #: The registry holds the sheet's number, spelt as phonesync writes it.
    IN_SYNC = "in_sync"
    #: The same number in another spelling (``+62812…`` for ``0812…``): nothing to repair.
    FORMAT_ONLY = "format_only"
    #: The patient has no mobile phone entry.
    MISSING = "missing"
    #: The registry holds another number, and nobody but phonesync wrote the patient since
    #: phonesync's last write (or phonesync never wrote it): the sheet's number was lost.
    DIFFERENT = "different"
    #: Another number, written after phonesync's last write for this NIK: another writer.
    REGISTRY_NEWER = "registry_newer"
    #: No patient carries the NIK.
    NOT_FOUND = "not_found"
    #: Several patients carry the NIK.
    AMBIGUOUS = "ambiguous"
    #: The registry did not answer for this NIK (after the client's retries): nothing concluded.
    UNCHECKED = "unchecked"


#: Classes that are drift: the registry does not hold the number the officers entered.
DRIFT = frozenset(
    {
        DriftClass.MISSING,
        DriftClass.DIFFERENT,
        DriftClass.REGISTRY_NEWER,
        DriftClass.NOT_FOUND,
        DriftClass.AMBIGUOUS,
    }
)
#: Drift ``--repair`` writes the sheet's number for; ``registry_newer`` only when asked.
REPAIRABLE = frozenset({DriftClass.MISSING, DriftClass.DIFFERENT})


def class_counts(
    classes: Iterable[DriftClass], base: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Counts by class, every class present (zero included), in the enum's order."""
    counts = {c.value: 0 for c in DriftClass}
    for name, n in (base or {}).items():
        counts[name] = counts.get(name, 0) + n
    for cls in classes:
        counts[cls.value] += 1
    return counts


def drift_total(counts: Mapping[str, int]) -> int:
    return sum(counts.get(c.value, 0) for c in DRIFT)


@dataclass(frozen=True, slots=True)
class DriftRow:
    """One NIK a reconcile found not ``in_sync``. ``nik_masked`` never holds the full NIK;
    ``repair`` says what ``--repair`` did ("" when it was not asked)."""

    row: int
    nik_masked: str
    drift: DriftClass
    sheet_date: str
    patient_id: str | None = None
    reason: str = ""
    repair: str = ""

    def as_report_row(self) -> dict[str, object]:
        return {
            "row": self.row,
            "nik": self.nik_masked,
            "class": self.drift.value,
            "sheet_date": self.sheet_date,
            "patient_id": self.patient_id,
            "reason": self.reason,
            "repair": self.repair,
        }


@dataclass(slots=True)
class ReconcileRun:
    """One reconcile (an execution: all its tasks). ``counts`` sums the finished tasks';
    ``finished_at`` is set when the last of ``task_count`` tasks recorded its shard."""

    reconcile_id: str
    since: str
    until: str
    task_count: int
    started_at: float
    repair: bool = False
    finished_at: float | None = None
    tasks_finished: int = 0
    counts: dict[str, int] = field(default_factory=dict)
