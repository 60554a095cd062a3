"""Offline mode: apply the sheet to a patient bundle file (no server, no state).

The bundle is indexed (:mod:`common.bundle`) while the sheet is read and planned. Knowing every
entry's NIKs before writing anything, the output pass settles each winning row at once —
``not_found``, ``ambiguous`` or decided on its one patient — and streams the output: an entry no
row touches is copied as the bytes it was read as, and only the patients that change are parsed
and serialised again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO

import orjson

from common.bundle import Bundle, EntryText, entry_text, parse_entry
from common.outcomes import RowOutcome, summarize
from common.patient import NOT_FOUND, Decision, ambiguous, decide_for
from common.phones import PhoneFormat
from common.planning import Candidate, DateWindow, Plan, plan_rows
from common.sheet import SheetRow

_INDENT = orjson.OPT_INDENT_2
_REPORT_CHUNK = 10_000


def transform(
    rows: Iterable[SheetRow],
    bundle: Callable[[], Bundle],
    out: BinaryIO,
    *,
    window: DateWindow | None = None,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
    last_updated: str,
) -> list[RowOutcome]:
    """Write the bundle with the sheet applied to ``out``; one outcome per sheet row, in row
    order. Nothing is written if the bundle is unusable.

    ``bundle`` is what :func:`common.bundle.reading` yields: it is called only once the sheet is
    planned, so that a bundle indexed in the background is indexed meanwhile.
    """
    plan = plan_rows(rows, window)
    application = _Application(plan, bundle(), fmt, last_updated)
    application.bundle.write(out, sorted(application.assigned), application.apply)
    return application.outcomes()


class _Application:
    """The plan applied to one bundle: which entry takes which rows, and what came of each."""

    def __init__(self, plan: Plan, bundle: Bundle, fmt: PhoneFormat, last_updated: str) -> None:
        self.plan, self.bundle, self.fmt, self.last_updated = plan, bundle, fmt, last_updated
        wanted = {int(c.nik) for c in plan.candidates}
        #: Wanted NIK (as an integer) → indexes of the entries carrying it.
        self.holders: dict[int, list[int]] = {}
        for nik, entry in zip(bundle.index.niks, bundle.index.holders, strict=True):
            if nik in wanted:
                self.holders.setdefault(nik, []).append(entry)
        #: Entry index → the rows it takes, in sheet order (an ambiguous NIK's rows take none).
        self.assigned: dict[int, list[Candidate]] = {}
        for candidate in plan.candidates:  # already in sheet order
            found = self.holders.get(int(candidate.nik), ())
            if len(found) == 1:
                self.assigned.setdefault(found[0], []).append(candidate)
        #: Wanted NIK → the outcome of its row, once its patient is decided.
        self.settled: dict[str, RowOutcome] = {}

    def apply(self, index: int, text: EntryText) -> EntryText:
        """Entry ``index`` with its rows applied; decides those rows."""
        entry: dict[str, Any] = parse_entry(text)
        original = resource = entry["resource"]
        for candidate in self.assigned[index]:
            decision = decide_for(resource, candidate.phone, self.fmt, self.last_updated)
            if decision.resource is not None:
                resource = decision.resource
            # Only the outcome is kept, not the patient: 77,000 kept resources would be ~0.9 GB.
            self.settled[candidate.nik] = _outcome(candidate, decision)
        return text if resource is original else entry_text({**entry, "resource": resource})

    def outcomes(self) -> list[RowOutcome]:
        """One per sheet row, in row order (call after the bundle is written)."""
        outcomes = [*self.plan.decided, *self.plan.other_date_outcomes()]
        for candidate in self.plan.candidates:
            outcome = self.settled.get(candidate.nik)
            if outcome is None:  # no patient, or several: nothing was decided
                found = self.holders.get(int(candidate.nik), ())
                ids = [self.bundle.patient_id(i) for i in found]
                outcome = _outcome(candidate, ambiguous(ids) if len(found) > 1 else NOT_FOUND)
            outcomes.append(outcome)
        outcomes.sort(key=lambda o: o.row)
        return outcomes


def _outcome(candidate: Candidate, decision: Decision) -> RowOutcome:
    return RowOutcome.of(
        candidate.row,
        decision.status,
        decision.reason,
        nik=candidate.nik,
        patient_id=decision.patient_id,
        assigned=candidate.phone.assigned,
    )


def write_report(outcomes: Sequence[RowOutcome], out: BinaryIO) -> None:
    """``{"summary": {status: count}, "rows": [one object per row]}``, 2-space indent.

    Written a chunk of rows at a time (a million rows as one tree of dicts would be ~0.5 GB),
    byte for byte what ``orjson.dumps(…, option=OPT_INDENT_2)`` writes for the whole.
    """
    head = orjson.dumps({"summary": summarize(list(outcomes)), "rows": []}, option=_INDENT)
    if not outcomes:
        out.write(head)
        return
    out.write(head[: -len(b"[]\n}")] + b"[\n    ")
    for start in range(0, len(outcomes), _REPORT_CHUNK):
        chunk = [o.as_report_row() for o in outcomes[start : start + _REPORT_CHUNK]]
        # Nested one list deep, the rows sit at the report's indentation (see entry_text).
        nested = orjson.dumps([chunk], option=_INDENT)
        out.write((b",\n    " if start else b"") + nested[len(b"[\n  [\n    ") : -len(b"\n  ]\n]")])
    out.write(b"\n  ]\n}")
