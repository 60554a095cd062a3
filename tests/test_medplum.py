"""The nightly job end to end against a real FHIR R4 server: Medplum's FHIR router (npm).

Nobody here wrote that server, so these tests check phonesync against FHIR as implemented, not
as our simulator imagines it: server-owned ``meta``, 412 on a stale ``If-Match``, searchsets
without ``fullUrl`` or ``entry``, and paging (20 per page, ``next`` links). The fixture is in
``tests/medplum_server.py``.
"""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import pytest

from common.config import load_settings
from common.fhir import FhirClient, FhirSettings, ServerCapabilities
from common.store import RunStatus, SqliteStore
from jobs.task import run_task
from tests.medplum_server import MedplumServer
from tests.simulator import SAMPLE_SHEET, sample

DATE = "2025-09-23"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

pytestmark = pytest.mark.timeout(120)


#: A sheet as officers leave it (tests/test_medplum_patch.py runs it in patch mode too).
MESSY_SHEET = (
    "Last Updated Date , NIK_Identifier,phone_number,name\n"
    "23-09-2025,3171044203920001,0812-0000-0000,DEWI\n"
    "23/09/2025, 3171 0442 0392 0001 ,+62 812 1111 1111,DEWI\n"
    "23-09-2025,3.57811E+15,6285678901234,MAYA\n"
    "31-02-2025,3273044812940003,082345678901,RINA\n"
    "23-09-2025,1275095011890004,021-5551234,LINDA\n"
    "23-09-2025,9999999999999999,081234567890,NOBODY\n"
    "\n"
    "2025-09-23,3578106207900002,0856 7890 1234,MAYA\n"
    "22-09-2025,3273044812940003,082345678901,RINA\n"
)


def run_job(
    server: MedplumServer,
    state: Path,
    tasks: int = 2,
    execution: str = "exec-1",
    **extra: str,
) -> list[int]:
    codes = []
    for index in range(tasks):
        env = {
            "FHIR_BASE_URL": server.fhir,
            "SHEET_CSV": str(SAMPLE_SHEET),
            "RUN_DATE": DATE,
            "STATE_PATH": str(state),
            "FHIR_BACKOFF_SECONDS": "0.01",
            "FHIR_TIMEOUT_SECONDS": "5",
            "CLOUD_RUN_TASK_INDEX": str(index),
            "CLOUD_RUN_TASK_COUNT": str(tasks),
            "CLOUD_RUN_EXECUTION": execution,
            **extra,
        }
        codes.append(run_task(load_settings(env)))
    return codes


def outcomes(state: Path) -> tuple[Any, dict[int, Any]]:
    store = SqliteStore(state)
    try:
        return store.get_run(DATE), {o.row: o for o in store.outcomes(DATE)}
    finally:
        store.close()


def without_meta(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "meta"} for p in patients]


def by_id(server: MedplumServer) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in server.patients()}


#: FHIR_BATCH_SIZE: one request per search/update, or the default, which is batch here (Medplum's
#: CapabilityStatement lists it) — every search and update then travels in batch Bundles.
MODES = pytest.mark.parametrize("batch", ["0", "auto"], ids=["per-row", "batch"])


def answered(server: MedplumServer, key: str) -> int:
    """Requests plus batch entries answered as ``key`` (``"PUT 412"``)."""
    return server.requests().get(key, 0) + server.entries().get(key, 0)


@MODES
def test_the_sample_reaches_the_reference_and_the_server_owns_meta(
    medplum: MedplumServer, tmp_path: Path, batch: str
) -> None:
    loaded = by_id(medplum)
    assert run_job(medplum, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
    after = medplum.patients()
    # Everything but meta is exactly the reference: phones set, every other field kept.
    assert without_meta(after) == without_meta(sample("patients_after_phone_update"))
    run, _ = outcomes(tmp_path / "s.db")
    assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 10}
    assert medplum.puts() == {f"Patient/patient-{i:03d}": 1 for i in range(1, 11)}
    # meta is the server's: a new UUID version and a UTC lastUpdated, not our bump or Jakarta time.
    for patient in after:
        meta = patient["meta"]
        assert UUID.fullmatch(meta["versionId"])
        assert meta["versionId"] != loaded[patient["id"]]["meta"]["versionId"]
        assert meta["lastUpdated"].endswith("Z")
    if batch == "auto":  # 2 shards: a Bundle of searches and one of updates each, no single call
        assert medplum.requests() == {"GET 200": 1, "POST 200": 4}  # the GET: task 0's /metadata
        assert medplum.entries() == {"GET 200": 10, "PUT 200": 10}


def test_medplums_capability_statement_passes_the_start_up_check(medplum: MedplumServer) -> None:
    async def check() -> ServerCapabilities:
        async with FhirClient(FhirSettings(base_url=medplum.fhir, rate_limit=0)) as client:
            return await client.checked_capabilities()

    capabilities = asyncio.run(check())
    assert capabilities.fhir_version == "4.0.1" and capabilities.batch
    assert {"search-type", "update"} <= capabilities.patient_interactions


@MODES
def test_a_rerun_makes_no_row_request(medplum: MedplumServer, tmp_path: Path, batch: str) -> None:
    run_job(medplum, tmp_path / "s.db", execution="exec-1", FHIR_BATCH_SIZE=batch)
    medplum.reset_stats()
    assert run_job(medplum, tmp_path / "s.db", execution="exec-2", FHIR_BATCH_SIZE=batch) == [0, 0]
    # The one request: task 0's GET metadata, the check of the server before the sheet.
    assert medplum.requests() == {"GET 200": 1} and medplum.puts() == {}
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"already_applied": 10}


@MODES
def test_a_rerun_with_a_fresh_ledger_finds_every_patient_unchanged(
    medplum: MedplumServer, tmp_path: Path, batch: str
) -> None:
    """Even without the ledger (a crash before it was written), nothing is written twice."""
    run_job(medplum, tmp_path / "first.db", FHIR_BATCH_SIZE=batch)
    medplum.reset_stats()
    run_job(medplum, tmp_path / "second.db", FHIR_BATCH_SIZE=batch)
    assert medplum.puts() == {}
    assert set(medplum.requests()) == ({"GET 200"} if batch == "0" else {"GET 200", "POST 200"})
    assert set(medplum.entries()) == (set() if batch == "0" else {"GET 200"})
    run, _ = outcomes(tmp_path / "second.db")
    assert run.counts == {"unchanged": 10}


@MODES
def test_a_messy_sheet(medplum: MedplumServer, tmp_path: Path, batch: str) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(MESSY_SHEET, encoding="utf-8")
    before = by_id(medplum)
    assert run_job(
        medplum, tmp_path / "s.db", SHEET_CSV=str(sheet), LOOKBACK_DAYS="0", FHIR_BATCH_SIZE=batch
    ) == [0, 0]
    run, rows = outcomes(tmp_path / "s.db")
    assert {row: o.status for row, o in rows.items()} == {
        2: "superseded",
        3: "updated",
        4: "invalid_nik",
        5: "invalid_date",
        6: "invalid_phone",
        7: "not_found",
        9: "updated",
    }
    assert run.counts["other_date"] == 1  # row 10, outside the window: counted, not recorded
    after = by_id(medplum)
    assert medplum.puts() == {"Patient/patient-001": 1, "Patient/patient-002": 1}
    mobile = [t for t in after["patient-001"]["telecom"] if t.get("use") == "mobile"]
    assert mobile == [{"system": "phone", "use": "mobile", "value": "081211111111"}]
    # Patients no valid row names are untouched, meta included.
    for pid in ("patient-003", "patient-004", "patient-005"):
        assert after[pid] == before[pid]


@MODES
def test_a_concurrent_edit_gets_412_and_both_changes_survive(
    medplum: MedplumServer, tmp_path: Path, batch: str
) -> None:
    # Between our search and our PUT, another writer replaces each patient's telecom.
    medplum.interpose(
        {
            f"Patient/patient-{i:03d}": {
                "telecom": [{"system": "email", "value": f"p{i}@example.org"}]
            }
            for i in range(1, 11)
        }
    )
    assert run_job(medplum, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
    assert answered(medplum, "PUT 412") == 10
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"updated": 10}
    patient = by_id(medplum)["patient-001"]
    assert patient["telecom"] == [
        {"system": "email", "value": "p1@example.org"},
        {"system": "phone", "use": "mobile", "value": "081234567890"},
    ]


@MODES
def test_ambiguous_and_not_found_niks_update_nothing(
    medplum: MedplumServer, tmp_path: Path, batch: str
) -> None:
    patients = [p for p in sample() if p["id"] != "patient-003"]
    twin = copy.deepcopy(next(p for p in patients if p["id"] == "patient-004"))
    twin["id"] = "patient-004-duplicate"
    medplum.load([*patients, twin])
    run_job(medplum, tmp_path / "s.db", FHIR_BATCH_SIZE=batch)
    _, rows = outcomes(tmp_path / "s.db")
    assert rows[4].status == "not_found"
    assert rows[5].status == "ambiguous" and "patient-004-duplicate" in rows[5].reason
    puts = medplum.puts()
    assert "Patient/patient-004" not in puts and "Patient/patient-004-duplicate" not in puts
    assert len(puts) == 8


def test_a_nik_on_more_than_one_page_is_ambiguous_with_every_patient_named(
    medplum: MedplumServer, tmp_path: Path
) -> None:
    """Medplum pages searches by 20: the 25 patients sharing a NIK arrive on two pages."""
    first = sample()[0]
    copies = []
    for n in range(25):
        twin = copy.deepcopy(first)
        twin["id"] = f"twin-{n:02d}"
        copies.append(twin)
    medplum.load([*copies, *sample()[1:]])
    # Per request: the adapter pages HTTP searches as Medplum's server does; a search inside a
    # batch Bundle goes to the in-memory repository, which does not page.
    run_job(medplum, tmp_path / "s.db", tasks=1, FHIR_BATCH_SIZE="0")
    _, rows = outcomes(tmp_path / "s.db")
    assert rows[2].status == "ambiguous"
    assert rows[2].reason.startswith("25 patients carry this NIK")
    assert all(f"twin-{n:02d}" in rows[2].reason for n in range(25))
    assert not any(pid.startswith("Patient/twin-") for pid in medplum.puts())
    # The shared NIK's search took two pages (the search and its next link); 9 other rows;
    # task 0's GET metadata.
    assert medplum.requests() == {"GET 200": 2 + 9 + 1, "PUT 200": 9}
