"""What happened to a sheet row: the closed set of statuses and one row's recorded outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from common.privacy import mask_nik

#: The warning on a row whose number is in a range no operator was assigned (applied anyway).
UNASSIGNED_RANGE_WARNING = (
    "phone_number: number range not assigned to any operator (applied anyway)"
)


class Status(StrEnum):
    # The number is now in the registry.
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    ALREADY_APPLIED = "already_applied"
    # The row did not take part (decided from the sheet alone).
    SUPERSEDED = "superseded"
    OTHER_DATE = "other_date"
    INVALID_DATE = "invalid_date"
    INVALID_NIK = "invalid_nik"
    INVALID_PHONE = "invalid_phone"
    # The registry could not take the number.
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    ERROR = "error"
    # Transient failure after retries: published for replay, not lost.
    DEFERRED = "deferred"
    # A replayed failure that a newer applied number made obsolete.
    STALE = "stale"


#: Outcomes that leave the patient holding the row's number.
APPLIED = frozenset({Status.UPDATED, Status.UNCHANGED, Status.ALREADY_APPLIED})
#: Rows the sheet rules rejected: a cell a field officer must fix.
SHEET_REJECTED = frozenset({Status.INVALID_DATE, Status.INVALID_NIK, Status.INVALID_PHONE})
#: Rows that need a field officer: fix the sheet, or check the NIK with the registry team.
NEEDS_OFFICER = SHEET_REJECTED | {Status.NOT_FOUND, Status.AMBIGUOUS}
#: Rows not (yet) applied for a reason on the registry's side: replay function or on-call.
NOT_YET_APPLIED = frozenset({Status.DEFERRED, Status.ERROR})


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """The recorded end of one sheet row. ``nik_masked`` never holds the full NIK."""

    row: int
    status: Status
    reason: str = ""
    patient_id: str | None = None
    nik_masked: str = ""
    warning: str = ""
    #: For a row that was waiting on a field officer when this run took it up again: the date
    #: it started waiting (ISO). "" for every other row, and for a row first found waiting by
    #: this run (it waits since this run's date).
    since: str = ""

    @classmethod
    def of(
        cls,
        row: int,
        status: Status,
        reason: str = "",
        *,
        nik: str = "",
        patient_id: str | None = None,
        assigned: bool = True,
        since: str = "",
    ) -> RowOutcome:
        """The outcome of sheet row ``row``: the one way phonesync makes one (a store only
        reads back what was made here). ``nik`` is masked here; ``assigned`` False adds the
        unassigned-range warning; ``since``: see the field."""
        return cls(
            row,
            status,
            reason,
            patient_id,
            nik_masked=mask_nik(nik) if nik else "",
            warning="" if assigned else UNASSIGNED_RANGE_WARNING,
            since=since,
        )

    def as_report_row(self) -> dict[str, object]:
        out: dict[str, object] = {
            "row": self.row,
            "status": self.status.value,
            "reason": self.reason,
            "patient_id": self.patient_id,
        }
        if self.nik_masked:
            out["nik"] = self.nik_masked
        if self.warning:
            out["warning"] = self.warning
        if self.since:
            out["waiting_since"] = self.since
        return out


def summarize(
    outcomes: list[RowOutcome], counted: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Counts by status, in the enum's order, zero counts left out; ``counted`` adds rows that
    have a count but no outcome record each (rows dated outside a run's window)."""
    counts = {s.value: 0 for s in Status}
    for outcome in outcomes:
        counts[outcome.status.value] += 1
    for status, count in (counted or {}).items():
        counts[status] += count
    return {k: v for k, v in counts.items() if v}
