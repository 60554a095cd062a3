"""The offline transform's pass over a bundle: who gets which number, and what is left alone."""

import io
import json
from typing import Any

import orjson

from common.bundle import reading
from common.outcomes import RowOutcome, Status, summarize
from common.sheet import SheetRow
from common.transform import transform, write_report

NOW = "2025-09-23T23:45:00.123456+07:00"
NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
NIK_A, NIK_B, NIK_C = "3171044203920001", "3578106207900002", "3273044812940003"


def patient(pid: str, *niks: str, **extra: Any) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "Patient",
            "id": pid,
            "meta": {"versionId": "v001"},
            "identifier": [{"system": NIK_SYSTEM, "value": n} for n in niks],
            **extra,
        }
    }


def row(number: int, nik: str, phone: str) -> SheetRow:
    return SheetRow(number, "23-09-2025", nik, "", phone)


def apply(rows: list[SheetRow], raw: bytes, background: bool = False) -> tuple[bytes, Any]:
    out = io.BytesIO()
    with reading(raw, "test", background=background) as bundle:
        outcomes = transform(rows, bundle, out, last_updated=NOW)
    return out.getvalue(), outcomes


def run(
    rows: list[SheetRow],
    entries: list[dict[str, Any]],
    layout: str = "indent-2",
    background: bool = False,
) -> Any:
    doc = {"patients_before_phone_update": entries}
    raw = (
        orjson.dumps(doc, option=orjson.OPT_INDENT_2) if layout == "indent-2" else orjson.dumps(doc)
    )
    written, outcomes = apply(rows, raw, background)
    resources = [e["resource"] for e in orjson.loads(written)["patients_after_phone_update"]]
    return resources, {o.row: (o.status.value, o.reason) for o in outcomes}


def phone_of(resource: dict[str, Any]) -> str | None:
    return next((t["value"] for t in resource.get("telecom", []) if t.get("use") == "mobile"), None)


def test_an_ambiguous_nik_updates_none_of_its_patients_but_their_other_niks_still_apply() -> None:
    entries = [patient("p1", NIK_A, NIK_B), patient("p2", NIK_A), patient("p3", NIK_C)]
    for layout, background in (("indent-2", False), ("indent-2", True), ("compact", False)):
        resources, outcomes = run(
            [row(2, NIK_A, "081111111111"), row(3, NIK_B, "082222222222")],
            entries,
            layout,
            background,
        )
        assert outcomes[2][0] == "ambiguous" and "(p1, p2)" in outcomes[2][1]
        assert outcomes[3][0] == "updated"
        assert [phone_of(r) for r in resources] == ["082222222222", None, None]
        assert [r["meta"]["versionId"] for r in resources] == ["v002", "v001", "v001"]


def test_two_niks_of_one_patient_apply_in_sheet_order() -> None:
    resources, outcomes = run(
        [row(2, NIK_B, "082222222222"), row(3, NIK_A, "081111111111")],
        [patient("p1", NIK_A, NIK_B)],
    )
    assert outcomes == {
        2: ("updated", "mobile phone added"),
        3: ("updated", "mobile phone replaced"),
    }
    assert phone_of(resources[0]) == "081111111111"
    assert resources[0]["meta"]["versionId"] == "v003"


def test_a_nik_listed_twice_on_one_patient_is_not_ambiguous() -> None:
    _, outcomes = run([row(2, NIK_A, "081111111111")], [patient("p1", NIK_A, NIK_A)])
    assert outcomes[2][0] == "updated"


def test_untouched_entries_are_returned_as_read_and_changed_ones_keep_their_other_keys() -> None:
    entries = [
        {**patient("p1", NIK_A), "fullUrl": "urn:uuid:1", "search": {"mode": "match"}},
        patient("p2", NIK_B, name=[{"text": "Dewi Ayu Lestari"}]),
    ]
    raw = json.dumps({"patients_before_phone_update": entries}, indent=2).encode()
    written, _ = apply([row(2, NIK_A, "0812-3456-7890")], raw)
    changed, untouched = orjson.loads(written)["patients_after_phone_update"]
    assert changed["fullUrl"] == "urn:uuid:1" and changed["search"] == {"mode": "match"}
    assert changed["resource"]["meta"] == {"versionId": "v002", "lastUpdated": NOW}
    assert untouched == entries[1]
    second = raw[
        raw.index(
            b'    {\n      "resource": {\n        "resourceType": "Patient",\n        "id": "p2"'
        ) :
    ]
    assert second[: second.index(b"\n    }") + 6] in written  # the very bytes it was read as


def test_not_found_and_unchanged() -> None:
    has_it = patient(
        "p1", NIK_A, telecom=[{"system": "phone", "use": "mobile", "value": "+6281234567890"}]
    )
    resources, outcomes = run(
        [row(2, NIK_A, "081234567890"), row(3, NIK_C, "081234567890")], [has_it]
    )
    assert outcomes[2][0] == "unchanged" and outcomes[3][0] == "not_found"
    assert resources == [has_it["resource"]]


def test_the_report_is_written_in_chunks_byte_for_byte_as_one_document() -> None:
    outcomes = [
        RowOutcome(r, Status.UPDATED if r % 3 else Status.NOT_FOUND, "é", f"p{r}", "3171****0001")
        for r in range(2, 25_002)
    ]
    for rows in (outcomes, outcomes[:1], []):
        out = io.BytesIO()
        write_report(rows, out)
        whole = {"summary": summarize(rows), "rows": [o.as_report_row() for o in rows]}
        assert out.getvalue() == orjson.dumps(whole, option=orjson.OPT_INDENT_2)
