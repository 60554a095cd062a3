"""JSON Patch is transport too: on random registries, rows and server faults, a shard synced
against a patch-only server (PUT answers 405, the CapabilityStatement lists only ``patch``, so
``FHIR_WRITE=auto`` patches) ends exactly as one synced by PUT — the same registry, the same
outcome for every row — per row and in batch Bundles, and no patient is written twice.

The scenarios (another writer racing our write once or always, refused writes, 5xx and 429
answers, outages, servers without batch) are tests/test_batch_equivalence.py's.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from common.outcomes import RowOutcome, Status
from tests.test_batch_equivalence import Scenario, run, scenarios

# Slow (~5 s): many examples, each synced three times. Not in scripts/test-fast.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def comparable(outcome: RowOutcome) -> RowOutcome:
    """Deferred rows name the request that failed: compare the rest. A refused write names the
    interaction (PUT Patient update / PATCH Patient patch): compare the server's reason."""
    if outcome.status is Status.DEFERRED:
        return RowOutcome(outcome.row, outcome.status, "", outcome.patient_id, outcome.nik_masked)
    reason = outcome.reason.replace("PATCH Patient patch", "PUT Patient update")
    return RowOutcome(outcome.row, outcome.status, reason, outcome.patient_id, outcome.nik_masked)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_update_and_patch_modes_end_the_same(scenario: Scenario) -> None:
    updated, registry_updated, sim_updated = run(scenario, 0)
    expected = {r: comparable(o) for r, o in updated.items()}
    for size in (0, scenario.batch_size):
        patched, registry_patched, sim_patched = run(scenario, size, write="patch-only")
        assert {r: comparable(o) for r, o in patched.items()} == expected
        assert registry_patched == registry_updated
        assert not sim_patched.puts_by_patient  # auto never tried PUT
        assert all(n == 1 for n in sim_patched.patches_by_patient.values())
        assert set(sim_patched.patches_by_patient) == set(sim_updated.puts_by_patient)
    assert all(n == 1 for n in sim_updated.puts_by_patient.values())
    assert not sim_updated.patches_by_patient
