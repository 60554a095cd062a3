import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.telemetry import LOGGER_NAME
from tests.emulators import (
    emulators,
    firestore_emulator,
    gcp_project,
    pubsub_emulator,
    pytest_runtest_makereport,
)
from tests.medplum_server import medplum, medplum_patch_only, medplum_server

ROOT = Path(__file__).resolve().parent.parent
#: What a command run in the checkout with default paths would leave there.
WRITTEN_BY_DEFAULT = (".phonesync", "out")

#: Fixtures that need more than Python, and the marker they give every test using them (also
#: through other fixtures). `scripts/test-fast` (pytest -m "not external") leaves those tests
#: out; `scripts/test` runs everything.
NEEDS = {
    "medplum_server": "npm",  # Node.js and Medplum's npm packages
    "medplum": "npm",
    "medplum_patch_only": "npm",
    "provider_schema": "npm",  # extracted from npm packages by scripts/install-test-servers
    "emulators": "emulators",  # gcloud's Firestore and Pub/Sub emulators, on Java
    "firestore_emulator": "emulators",
    "pubsub_emulator": "emulators",
    "gcp_project": "emulators",
    "terraform": "terraform",  # the terraform binary
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = {NEEDS[name] for name in getattr(item, "fixturenames", ()) if name in NEEDS}
        for need in sorted(needs):
            item.add_marker(need)
        if needs:
            item.add_marker("external")


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """Tests never write into the checkout: fail the session if one created a default folder."""
    before = {name for name in WRITTEN_BY_DEFAULT if (ROOT / name).exists()}
    yield
    created = {name for name in WRITTEN_BY_DEFAULT if (ROOT / name).exists()} - before
    assert not created, f"a test wrote into the checkout: {sorted(created)}"


@pytest.fixture(autouse=True)
def phonesync_logging_restored() -> Iterator[None]:
    """A test that runs a command in this process (``main(["run"])``) leaves phonesync's logger
    writing to that test's captured stream, closed once the test ends: later lines would go
    nowhere ("--- Logging error ---" on stderr). Each test gets the handlers it started with."""
    logger = logging.getLogger(LOGGER_NAME)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


__all__ = [
    "checkout_untouched",
    "emulators",
    "firestore_emulator",
    "gcp_project",
    "medplum",
    "medplum_patch_only",
    "medplum_server",
    "phonesync_logging_restored",
    "pubsub_emulator",
    "pytest_runtest_makereport",
]
