"""One Cloud Run task of a reconcile: the job's image run as ``phonesync reconcile`` (an
execution with overrides, e.g. the weekly schedule), each task its shard of the NIKs.

Exit codes follow the job's convention (jobs/task.py): non-zero only when the task should be
retried. Drift is not a failure here: a task that found drift exits 0, and the drift metric and
its alert report it (``reconcile_drift`` lines, ``reconcile_finished`` from the last task). A
task that could not conclude (the registry did not answer, NIKs unchecked, repairs failed)
exits 1: Cloud Run retries it, and the retry records its shard again in place of this one.
"""

from __future__ import annotations

import logging

from common.config import Settings
from common.errors import InputError
from common.fhir import FhirAuthError, FhirServerUnfit, FhirTransientError
from common.reconcile import ReconcileOptions, run_reconcile
from common.runtime import open_store
from common.telemetry import log_event

EXIT_OK = 0
EXIT_RETRY = 1


def run_reconcile_task(settings: Settings, options: ReconcileOptions) -> int:
    """Reconcile this task's shard; the process exit code."""
    store = open_store(settings)
    try:
        result = run_reconcile(settings, store, options)
    except (InputError, FhirServerUnfit, FhirTransientError, FhirAuthError) as exc:
        log_event(
            "reconcile_failed",
            f"the reconcile could not run: {exc}",
            severity=logging.ERROR,
            reason=str(exc),
        )
        return EXIT_RETRY
    finally:
        store.close()
    return EXIT_RETRY if result.failed else EXIT_OK
