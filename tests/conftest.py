from tests.emulators import (
    emulators,
    firestore_emulator,
    gcp_project,
    pubsub_emulator,
    pytest_runtest_makereport,
)

__all__ = [
    "emulators",
    "firestore_emulator",
    "gcp_project",
    "pubsub_emulator",
    "pytest_runtest_makereport",
]
