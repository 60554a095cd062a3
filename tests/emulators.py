"""The real Google emulators (Firestore, Pub/Sub) for tests, started once per session.

Without ``gcloud`` the emulator-backed tests skip with one loud line — except in CI
(``CI=true``), where they fail: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

INSTALL_HINT = (
    "Firestore/Pub/Sub emulator tests need the Google Cloud SDK: install it with the "
    "'beta', 'cloud-firestore-emulator' and 'pubsub-emulator' components and a Java runtime"
)


@dataclass
class Emulator:
    name: str
    host: str  # host:port
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(name: str) -> Emulator:
    host = f"127.0.0.1:{_free_port()}"
    process = subprocess.Popen(
        ["gcloud", "beta", "emulators", name, "start", f"--host-port={host}", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # gcloud spawns java: stop the whole group at the end
    )
    return Emulator(name, host, process)


def _wait(emulator: Emulator, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            raise RuntimeError(
                f"the {emulator.name} emulator exited with {emulator.process.returncode}"
            )
        try:
            urllib.request.urlopen(f"http://{emulator.host}/", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the {emulator.name} emulator did not answer within {timeout:.0f} s")


def _stop(emulator: Emulator) -> None:
    try:
        os.killpg(emulator.process.pid, signal.SIGTERM)
        emulator.process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(emulator.process.pid, signal.SIGKILL)


def require_gcloud() -> None:
    if shutil.which("gcloud") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT + " (CI must run these tests)")
        pytest.skip(INSTALL_HINT)


@pytest.fixture(scope="session")
def emulators() -> Iterator[dict[str, Emulator]]:
    """Both emulators, started in parallel once per session; env vars set for the clients."""
    require_gcloud()
    started = {name: _start(name) for name in ("firestore", "pubsub")}
    saved = {k: os.environ.get(k) for k in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")}
    try:
        for emulator in started.values():
            _wait(emulator)
        os.environ["FIRESTORE_EMULATOR_HOST"] = started["firestore"].host
        os.environ["PUBSUB_EMULATOR_HOST"] = started["pubsub"].host
        yield started
    finally:
        for emulator in started.values():
            _stop(emulator)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_projects = iter(range(1, 1_000_000))


@pytest.fixture
def gcp_project(emulators: dict[str, Emulator]) -> str:
    """A fresh project id per test: emulator state is isolated by project."""
    return f"phonesync-test-{os.getpid()}-{next(_projects)}"
