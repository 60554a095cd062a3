"""Offline mode: apply the sheet to a patient bundle file (no server, no state)."""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from common.errors import InputError
from common.outcomes import RowOutcome, summarize
from common.patient import Resource, decide, patient_niks
from common.phones import PhoneFormat
from common.planning import DateWindow, plan_rows
from common.privacy import mask_nik
from common.sheet import SheetRow

INPUT_KEYS = ("patients_before_phone_update", "patients_after_phone_update")
OUTPUT_KEY = "patients_after_phone_update"

Entry = dict[str, Any]


@dataclass(slots=True)
class TransformResult:
    entries: list[Entry]
    outcomes: list[RowOutcome]


def load_entries(path: str | Path) -> list[Entry]:
    """Patient entries (``{"resource": Patient, …}``) of a bundle file.

    Accepts the sample's ``{"patients_before_phone_update": […]}`` (or ``…_after…``), a FHIR
    ``Bundle`` with ``entry``, or a bare list.
    """
    try:
        with _collector_paused():
            data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise InputError(f"bundle file not found: {path}") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"bundle file {path} is not valid JSON: {exc}") from None
    return entries_of(data, str(path))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic GC while building a large acyclic tree.

    Loading 100,000 patients allocates millions of containers; each allocation burst would
    trigger a full traversal of everything loaded so far (measured: +2 s on a 270 MB bundle).
    JSON has no cycles, so there is nothing for the collector to find. ``gc.freeze`` then moves
    the tree out of later collections' way.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def entries_of(data: object, source: str) -> list[Entry]:
    if isinstance(data, dict):
        for key in (*INPUT_KEYS, "entry"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and isinstance(e.get("resource"), dict) for e in data
    ):
        raise InputError(
            f'{source}: expected patients as a list of {{"resource": …}} entries under '
            f"{INPUT_KEYS[0]!r}, {INPUT_KEYS[1]!r} or a Bundle's 'entry'"
        )
    return data


def transform(
    rows: Sequence[SheetRow],
    entries: Sequence[Entry],
    *,
    window: DateWindow | None = None,
    fmt: PhoneFormat = PhoneFormat.NATIONAL,
    last_updated: str,
) -> TransformResult:
    plan = plan_rows(rows, window)
    by_nik: dict[str, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        for nik in set(patient_niks(entry["resource"])):
            by_nik[nik].append(index)
    out = list(entries)
    outcomes = list(plan.decided)
    for candidate in plan.candidates:
        indexes = by_nik.get(candidate.nik, [])
        matches: list[Resource] = [out[i]["resource"] for i in indexes]
        decision = decide(matches, candidate.phone, fmt, last_updated)
        if decision.resource is not None:
            out[indexes[0]] = {**out[indexes[0]], "resource": decision.resource}
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
    return TransformResult(out, outcomes)


def dump_bundle(entries: Sequence[Entry]) -> bytes:
    """``{"patients_after_phone_update": […]}``, 2-space indent, UTF-8, trailing newline."""
    return orjson.dumps({OUTPUT_KEY: entries}, option=orjson.OPT_INDENT_2) + b"\n"


def report(outcomes: Sequence[RowOutcome]) -> dict[str, object]:
    return {
        "summary": summarize(list(outcomes)),
        "rows": [o.as_report_row() for o in outcomes],
    }
