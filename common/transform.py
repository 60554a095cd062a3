"""Offline mode: apply the sheet to a patient bundle file (no server, no state).

One pass over the bundle's entries (:mod:`common.bundle`): each is parsed, its NIKs looked up
among the sheet's winning rows, decided on and, only if it changed, serialised again. Whether a
NIK is ambiguous (several patients carry it) is known only at the end of the pass; the few
entries concerned are then decided again without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.bundle import (
    EntryText,
    MalformedEntry,
    collector_paused,
    cut_entries,
    entry_text,
    parse_entry,
    rewrite_entries,
)
from common.outcomes import RowOutcome, summarize
from common.patient import NOT_FOUND, Decision, ambiguous, decide_for, patient_id, patient_niks
from common.phones import PhoneFormat
from common.planning import Candidate, DateWindow, Plan, plan_rows
from common.privacy import mask_nik
from common.sheet import SheetRow


@dataclass(slots=True)
class TransformResult:
    #: The output entries' JSON texts, in input order (see :func:`common.bundle.write_bundle`).
    entries: list[EntryText]
    #: One per sheet row, in row order.
    outcomes: list[RowOutcome]


def transform(
    rows: Sequence[SheetRow],
    bundle: bytes,
    *,
    window: DateWindow | None = None,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
    last_updated: str,
    source: str = "bundle",
) -> TransformResult:
    """Apply the sheet rules to ``bundle`` (a bundle file's bytes; ``source`` names it in errors)."""
    with collector_paused():
        plan = plan_rows(rows, window)
        texts = cut_entries(bundle)
        if texts is not None:
            try:
                return _Pass(plan, fmt, last_updated).run(texts)
            except MalformedEntry:
                pass  # it only looked cut-able: parse it whole, to rewrite it or to say what is wrong
        return _Pass(plan, fmt, last_updated).run(rewrite_entries(bundle, source))


class _Pass:
    def __init__(self, plan: Plan, fmt: PhoneFormat, last_updated: str) -> None:
        self.plan = plan
        self.fmt = fmt
        self.last_updated = last_updated
        self.wanted = {c.nik: c for c in plan.candidates}
        #: Wanted NIK → (entry index, patient id) of every entry carrying it.
        self.holders: dict[str, list[tuple[int, str | None]]] = {}
        self.decisions: dict[str, Decision] = {}

    def run(self, texts: list[EntryText]) -> TransformResult:
        out = list(texts)
        for index, text in enumerate(texts):
            entry = parse_entry(text)
            candidates = self._candidates(entry["resource"])
            if not candidates:
                continue
            pid = patient_id(entry["resource"])
            for candidate in candidates:
                self.holders.setdefault(candidate.nik, []).append((index, pid))
            out[index] = self._apply(entry, candidates) or text
        ambiguous_niks = {nik for nik, found in self.holders.items() if len(found) > 1}
        for nik in ambiguous_niks:
            del self.wanted[nik]
        for index in sorted({i for nik in ambiguous_niks for i, _ in self.holders[nik]}):
            entry = parse_entry(texts[index])
            out[index] = self._apply(entry, self._candidates(entry["resource"])) or texts[index]
        return TransformResult(out, self._outcomes(ambiguous_niks))

    def _candidates(self, resource: dict[str, object]) -> list[Candidate]:
        """The winning rows for this patient's NIKs, in sheet order (usually none or one)."""
        wanted = self.wanted
        found = [wanted[n] for n in set(patient_niks(resource)) if n in wanted]
        return sorted(found, key=lambda c: c.row) if len(found) > 1 else found

    def _apply(self, entry: dict[str, object], candidates: list[Candidate]) -> bytes | None:
        """Decide each candidate in turn; the entry's new text, or None if it did not change."""
        original = resource = entry["resource"]
        assert isinstance(resource, dict)
        for candidate in candidates:
            decision = decide_for(resource, candidate.phone, self.fmt, self.last_updated)
            if decision.resource is not None:
                resource = decision.resource
                # Keep no patient past its entry: 77,000 kept resources would be ~0.9 GB.
                decision = Decision(decision.status, decision.reason, decision.patient_id)
            self.decisions[candidate.nik] = decision
        return None if resource is original else entry_text({**entry, "resource": resource})

    def _outcomes(self, ambiguous_niks: set[str]) -> list[RowOutcome]:
        outcomes = list(self.plan.decided)
        for candidate in self.plan.candidates:
            if candidate.nik in ambiguous_niks:
                decision = ambiguous([pid for _, pid in self.holders[candidate.nik]])
            else:
                decision = self.decisions.get(candidate.nik, NOT_FOUND)
            outcomes.append(
                RowOutcome(
                    candidate.row,
                    decision.status,
                    decision.reason,
                    decision.patient_id,
                    nik_masked=mask_nik(candidate.nik),
                    warning=candidate.warning,
                )
            )
        outcomes.sort(key=lambda o: o.row)
        return outcomes


def report(outcomes: Sequence[RowOutcome]) -> dict[str, object]:
    return {
        "summary": summarize(list(outcomes)),
        "rows": [o.as_report_row() for o in outcomes],
    }
