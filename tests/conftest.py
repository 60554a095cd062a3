from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators import (
    emulators,
    firestore_emulator,
    gcp_project,
    pubsub_emulator,
    pytest_runtest_makereport,
)
from tests.medplum_server import medplum, medplum_server

ROOT = Path(__file__).resolve().parent.parent
#: What a command run in the checkout with default paths would leave there.
WRITTEN_BY_DEFAULT = (".phonesync", "out")


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """Tests never write into the checkout: fail the session if one created a default folder."""
    before = {name for name in WRITTEN_BY_DEFAULT if (ROOT / name).exists()}
    yield
    created = {name for name in WRITTEN_BY_DEFAULT if (ROOT / name).exists()} - before
    assert not created, f"a test wrote into the checkout: {sorted(created)}"


__all__ = [
    "checkout_untouched",
    "emulators",
    "firestore_emulator",
    "gcp_project",
    "medplum",
    "medplum_server",
    "pubsub_emulator",
    "pytest_runtest_makereport",
]
