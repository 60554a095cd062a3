"""Issue 3.2 against a real FHIR R4 server: Medplum answering PUT with 405 and listing only
``patch`` (the deployment mode of tests/medplum/server.mjs; JSON Patch itself is Medplum's).

With ``FHIR_WRITE=auto`` the CapabilityStatement chooses JSON Patch; per row and in batch
Bundles (PATCH entries carrying a Binary) the sample reaches the reference, the messy sheet ends
as it does in update mode, a rerun writes nothing, and a concurrent edit survives: through 412
on a stale ``If-Match``, and through the ``test`` ops where the registry ignores ``If-Match``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from common.fhir import (
    FhirClient,
    FhirPatchRefused,
    FhirServerUnfit,
    FhirSettings,
    ServerCapabilities,
    patch_raced,
)
from tests.medplum_server import MedplumServer
from tests.simulator import sample
from tests.test_medplum import MESSY_SHEET, MODES, answered, by_id, outcomes, run_job, without_meta

pytestmark = pytest.mark.timeout(120)

EMAIL = {"system": "email", "value": "someone@example.org"}


def capabilities(server: MedplumServer, write: str = "auto") -> ServerCapabilities:
    async def check() -> ServerCapabilities:
        settings = FhirSettings(base_url=server.fhir, rate_limit=0, write=write)  # type: ignore[arg-type]
        async with FhirClient(settings) as client:
            return await client.checked_capabilities()

    return asyncio.run(check())


def test_a_patch_only_server_passes_the_check_unless_update_is_asked_for(
    medplum_patch_only: MedplumServer,
) -> None:
    found = capabilities(medplum_patch_only)
    assert "update" not in found.patient_interactions and "patch" in found.patient_interactions
    assert found.write_interaction() == "patch"
    with pytest.raises(FhirServerUnfit, match=r"GET metadata: 200: Patient lacks update\)"):
        capabilities(medplum_patch_only, "update")


def test_fhir_write_update_against_a_patch_only_server_fails_the_run_in_one_line(
    medplum_patch_only: MedplumServer, tmp_path: Path
) -> None:
    codes = run_job(medplum_patch_only, tmp_path / "s.db", FHIR_WRITE="update")
    assert codes == [1, 1]
    run, rows = outcomes(tmp_path / "s.db")
    assert "Patient lacks update" in run.reason and rows == {}
    assert medplum_patch_only.writes() == {}


def test_auto_without_a_capability_statement_turns_to_patch_at_the_first_405(
    medplum_patch_only: MedplumServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage of ``GET metadata`` at start leaves ``auto`` without a verdict, so it tries
    PUT; the registry's 405 turns the task to JSON Patch (one ``fhir_write_fallback`` warning)
    and no row ends in error."""
    server = medplum_patch_only
    server.set_mode(metadata_down=True)
    with caplog.at_level(logging.WARNING):
        assert run_job(server, tmp_path / "s.db", tasks=1) == [0]
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"updated": 10}
    assert without_meta(server.patients()) == without_meta(sample("patients_after_phone_update"))
    assert server.patches() == {f"Patient/patient-{i:03d}": 1 for i in range(1, 11)}
    assert 1 <= answered(server, "PUT 405") <= 10  # the rows in flight when the first came back
    events = [r.json_fields["event"] for r in caplog.records if hasattr(r, "json_fields")]
    assert "fhir_unchecked" in events
    assert events.count("fhir_write_fallback") == 1


@MODES
def test_the_sample_reaches_the_reference_by_json_patch(
    medplum_patch_only: MedplumServer, tmp_path: Path, batch: str
) -> None:
    server = medplum_patch_only
    assert run_job(server, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
    assert without_meta(server.patients()) == without_meta(sample("patients_after_phone_update"))
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"updated": 10}
    assert server.patches() == {f"Patient/patient-{i:03d}": 1 for i in range(1, 11)}
    assert server.puts() == {} and answered(server, "PUT 405") == 0  # auto never tried PUT
    if batch == "auto":  # PATCH entries, each with its own status
        assert server.requests() == {"GET 200": 1, "POST 200": 4}
        assert server.entries() == {"GET 200": 10, "PATCH 200": 10}
    else:
        assert server.requests() == {"GET 200": 11, "PATCH 200": 10}


@MODES
def test_the_messy_sheet_ends_as_in_update_mode(
    medplum: MedplumServer, tmp_path: Path, batch: str
) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(MESSY_SHEET, encoding="utf-8")
    env = {"SHEET_CSV": str(sheet), "LOOKBACK_DAYS": "0", "FHIR_BATCH_SIZE": batch}
    ends = []
    for write in ("update", "patch"):
        medplum.load(sample())
        if write == "patch":
            medplum.set_mode(write="patch-only")
        assert run_job(medplum, tmp_path / f"{write}.db", **env) == [0, 0]
        run, rows = outcomes(tmp_path / f"{write}.db")
        ends.append(
            (
                without_meta(medplum.patients()),
                {r: (o.status, o.reason, o.patient_id) for r, o in rows.items()},
                run.counts,
                medplum.writes(),
            )
        )
    assert ends[0] == ends[1]
    assert ends[1][3] == {"Patient/patient-001": 1, "Patient/patient-002": 1}


@MODES
def test_a_rerun_writes_nothing(
    medplum_patch_only: MedplumServer, tmp_path: Path, batch: str
) -> None:
    server = medplum_patch_only
    run_job(server, tmp_path / "s.db", execution="exec-1", FHIR_BATCH_SIZE=batch)
    server.reset_stats()
    assert run_job(server, tmp_path / "s.db", execution="exec-2", FHIR_BATCH_SIZE=batch) == [0, 0]
    assert server.requests() == {"GET 200": 1} and server.writes() == {}
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"already_applied": 10}
    # Without the ledger (a crash before it was written): found unchanged, still no write.
    run_job(server, tmp_path / "fresh.db", FHIR_BATCH_SIZE=batch)
    assert server.writes() == {}
    run, _ = outcomes(tmp_path / "fresh.db")
    assert run.counts == {"unchanged": 10}


def interpose_email(server: MedplumServer) -> None:
    """Between our search and our PATCH, another writer gives each patient an email."""
    server.interpose({f"Patient/patient-{i:03d}": {"telecom": [EMAIL]} for i in range(1, 11)})


@MODES
def test_a_stale_if_match_gets_412_and_the_other_writers_edit_survives(
    medplum_patch_only: MedplumServer, tmp_path: Path, batch: str
) -> None:
    """Every patient has an email; another writer deactivates each between our search and our
    PATCH. The patch's test of the telecom array still holds: If-Match is what refuses it."""
    server = medplum_patch_only
    patients = copy.deepcopy(sample())
    for patient in patients:
        patient["telecom"] = [EMAIL]
    server.load(patients)
    server.set_mode(write="patch-only")
    server.interpose({f"Patient/patient-{i:03d}": {"active": False} for i in range(1, 11)})
    assert run_job(server, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
    assert answered(server, "PATCH 412") == 10 and answered(server, "PATCH 400") == 0
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"updated": 10}
    patient = by_id(server)["patient-001"]
    assert patient["active"] is False
    assert patient["telecom"] == [
        EMAIL,
        {"system": "phone", "use": "mobile", "value": "081234567890"},
    ]


@MODES
def test_a_race_on_telecom_fails_the_test_op_first_and_the_other_writers_edit_survives(
    medplum_patch_only: MedplumServer, tmp_path: Path, batch: str
) -> None:
    """Medplum applies a patch's ``test`` ops before it checks If-Match: a patient without
    telecom, given an email by another writer, answers 400 "Test failed" (the test of the
    version read), not 412. phonesync reads again, sees the race and patches the new version."""
    server = medplum_patch_only
    interpose_email(server)
    assert run_job(server, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
    assert answered(server, "PATCH 400") == 10
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"updated": 10}
    assert by_id(server)["patient-001"]["telecom"] == [
        EMAIL,
        {"system": "phone", "use": "mobile", "value": "081234567890"},
    ]


@MODES
def test_where_if_match_is_ignored_the_test_op_keeps_the_other_writers_edit(
    medplum_patch_only: MedplumServer, tmp_path: Path, batch: str
) -> None:
    """The registry drops If-Match. Another writer puts a home phone in front of each patient's
    entries, so the mobile entry moves from /telecom/1 to /telecom/2: without the ``test`` of
    /telecom/1 our replace would overwrite the email's value. Medplum answers 400 "Test
    failed"; phonesync reads again, sees the race and replaces /telecom/2/value."""
    server = medplum_patch_only
    old_mobile = {"system": "phone", "use": "mobile", "value": "081100000000"}
    patients = copy.deepcopy(sample())
    for patient in patients:
        patient["telecom"] = [EMAIL, old_mobile]
    server.load(patients)
    server.set_mode(write="patch-only", ignore_if_match=True)
    home = {"system": "phone", "use": "home", "value": "0215550000"}
    server.interpose(
        {f"Patient/patient-{i:03d}": {"telecom": [home, EMAIL, old_mobile]} for i in range(1, 11)}
    )
    assert run_job(server, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
    assert answered(server, "PATCH 400") == 10 and answered(server, "PATCH 412") == 0
    run, _ = outcomes(tmp_path / "s.db")
    assert run.counts == {"updated": 10}
    assert by_id(server)["patient-001"]["telecom"] == [
        home,
        EMAIL,
        {**old_mobile, "value": "081234567890"},
    ]


def test_medplums_400s_a_failed_test_is_a_race_any_other_is_not(
    medplum_patch_only: MedplumServer,
) -> None:
    """How phonesync tells them apart: not by the text (servers word it differently) but by
    reading the patient again and running the patch's ``test`` ops on it."""
    server = medplum_patch_only

    async def patch(document: list[dict[str, Any]]) -> tuple[FhirPatchRefused, dict[str, Any]]:
        async with FhirClient(FhirSettings(base_url=server.fhir, rate_limit=0)) as client:
            with pytest.raises(FhirPatchRefused) as refused:
                await client.patch("patient-001", document, version_id=None, result={})
            return refused.value, await client.read("patient-001")

    stale = [
        {"op": "test", "path": "/meta/versionId", "value": "an-old-version"},
        {"op": "add", "path": "/telecom", "value": [EMAIL]},
    ]
    refused, fresh = asyncio.run(patch(stale))
    assert refused.status == 400 and refused.diagnostics.startswith("Test failed: ")
    assert patch_raced(refused.document, fresh)
    missing = [{"op": "replace", "path": "/telecom", "value": [EMAIL]}]
    refused, fresh = asyncio.run(patch(missing))
    assert (refused.status, refused.diagnostics) == (400, "Value required at path: /telecom")
    assert not patch_raced(refused.document, fresh)
    assert server.writes() == {}


@MODES
def test_replace_only_updates_who_has_telecom_and_fails_who_has_none(
    medplum_patch_only: MedplumServer, tmp_path: Path, batch: str
) -> None:
    """``FHIR_PATCH_OPS=replace-only``: a mobile entry's value replaced, an entry appended by
    replacing the whole array, and a patient without telecom an ``error`` naming why (Medplum
    answers replace of a missing /telecom with 400; phonesync does not send it)."""
    server = medplum_patch_only
    patients = copy.deepcopy(sample())
    patients[0]["telecom"] = [EMAIL, {"system": "phone", "use": "mobile", "value": "0811"}]
    patients[1]["telecom"] = [EMAIL]
    server.load(patients)
    server.set_mode(write="patch-only")
    assert run_job(server, tmp_path / "s.db", FHIR_BATCH_SIZE=batch, FHIR_PATCH_OPS="replace-only")
    _, rows = outcomes(tmp_path / "s.db")
    assert rows[2].status == rows[3].status == "updated"
    assert {rows[r].status for r in range(4, 12)} == {"error"}
    assert "no telecom and FHIR_PATCH_OPS=replace-only" in rows[4].reason
    after = by_id(server)
    assert after["patient-001"]["telecom"] == [
        EMAIL,
        {"system": "phone", "use": "mobile", "value": "081234567890"},
    ]
    assert after["patient-002"]["telecom"] == [
        EMAIL,
        {"system": "phone", "use": "mobile", "value": "085678901234"},
    ]
    assert server.patches() == {"Patient/patient-001": 1, "Patient/patient-002": 1}
    assert answered(server, "PATCH 400") == 0  # nothing sent that replace cannot do
