from tests.emulators import (
    emulators,
    firestore_emulator,
    gcp_project,
    pubsub_emulator,
    pytest_runtest_makereport,
)
from tests.medplum_server import medplum, medplum_server

__all__ = [
    "emulators",
    "firestore_emulator",
    "gcp_project",
    "medplum",
    "medplum_server",
    "pubsub_emulator",
    "pytest_runtest_makereport",
]
