"""Synthetic sheets and bundles shaped like the sample, for benchmarks and load tests."""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"

# How field officers actually type numbers: most clean, many with separators or prefixes, a few bad.
_SPELLINGS = (
    (40, "0{a}{b}{c}"),
    (15, "0{a}-{b}-{c}"),
    (10, "+62 {a} {b} {c}"),
    (10, "62{a}{b}{c}"),
    (8, "{a}{b}{c}"),
    (5, "(0{a}) {b}.{c}"),
    (4, "0062{a}{b}{c}"),
    (3, "o{a}{b}{c}"),  # letter o typed for zero: invalid
    (3, "021-{b}{c}"),  # landline: invalid
    (2, "0{a}{b}"),  # too short: invalid
)


def nik(i: int) -> str:
    return f"3171{i:012d}"


def patients(count: int, seed: int = 7, first: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` Patient resources cloned from the sample, each with its own id and NIK, patient
    ``first`` first (made one at a time: a million of them at once would take several GB)."""
    template = json.loads((EXAMPLES / "patients-data.json").read_text())[
        "patients_before_phone_update"
    ]
    rng = random.Random(seed)
    for i in range(first, first + count):
        resource = copy.deepcopy(template[i % len(template)]["resource"])
        resource["id"] = f"patient-{i:07d}"
        for ident in resource["identifier"]:
            if ident["system"] == NIK_SYSTEM:
                ident["value"] = nik(i)
        if rng.random() < 0.3:
            resource["telecom"] = [
                {"system": "phone", "use": "mobile", "value": f"08{rng.randrange(10**9, 10**10)}"}
            ]
        yield resource


def sheet_rows(
    count: int, patient_count: int, day: str = "23-09-2025", seed: int = 11
) -> list[list[str]]:
    rng = random.Random(seed)
    weights = [w for w, _ in _SPELLINGS]
    formats = [f for _, f in _SPELLINGS]
    rows = [["last_updated_date", "nik_identifier", "name", "phone_number"]]
    for i in range(count):
        digits = f"8{rng.randrange(10**9, 10**10)}"
        spelling = rng.choices(formats, weights)[0]
        phone = spelling.format(a=digits[:3], b=digits[3:7], c=digits[7:])
        rows.append(
            [
                day,
                nik(rng.randrange(patient_count)) if i % 5 == 0 else nik(i % patient_count),
                f"PATIENT {i}",
                phone,
            ]
        )
    return rows


def accumulated_rows(count: int, nights: int, last_night: date, seed: int = 11) -> list[list[str]]:
    """A sheet that grew over ``nights`` nights up to ``last_night``, an equal share of its
    ``count`` rows a night, oldest first, as officers append them. Row ``i`` is patient ``i``'s,
    but every fifth row repeats a patient of the same night (it supersedes that row or is
    superseded by it); numbers are spelled as in :func:`sheet_rows`."""
    per_night = -(-count // nights)
    rows = sheet_rows(count, count, seed=seed)
    rng = random.Random(seed + 1)
    for i, row in enumerate(rows[1:]):
        night = i // per_night
        row[0] = (last_night - timedelta(days=nights - 1 - night)).strftime("%d-%m-%Y")
        if i % 5 == 0:
            row[1] = nik(
                night * per_night + rng.randrange(min(per_night, count - night * per_night))
            )
        else:
            row[1] = nik(i)
    return rows


def write_sheet(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue())


def write_bundle(path: Path, resources: Iterable[dict[str, Any]]) -> None:
    """What ``json.dump({"patients_before_phone_update": [...]}, indent=2, ensure_ascii=False)``
    writes, an entry at a time."""
    with path.open("w") as handle:
        handle.write('{\n  "patients_before_phone_update": [')
        separator = "\n    "
        for resource in resources:
            # Nested two lists deep, an entry is indented as it stands in the file.
            nested = json.dumps([[{"resource": resource}]], indent=2, ensure_ascii=False)
            handle.write(separator + nested[len("[\n  [\n    ") : -len("\n  ]\n]")])
            separator = ",\n    "
        handle.write("\n  ]\n}" if separator != "\n    " else "]\n}")
