"""The real Google emulators (Firestore, Pub/Sub) for tests, started once per session.

Both start in parallel on free loopback ports (5 to 20 s); ``FIRESTORE_EMULATOR_HOST`` and
``PUBSUB_EMULATOR_HOST`` point the clients at them for the session and are restored after.
Each test gets a project id of its own, so its documents, topics and subscriptions are its own.

Without ``gcloud`` (or its emulator components) the emulator-backed tests skip with one loud
line — except in CI (``CI=true``), where they fail: CI must run them.

Fixtures: ``emulators`` (session: both processes), ``gcp_project`` (a fresh project id shared by
both emulators), ``firestore_emulator`` and ``pubsub_emulator`` (an :class:`EmulatorProject`:
``host`` as host:port and that ``project``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

INSTALL_HINT = (
    "Firestore/Pub/Sub emulator tests not run: install the Google Cloud SDK with the "
    "cloud-firestore-emulator and pubsub-emulator components "
    "(`gcloud components install beta cloud-firestore-emulator pubsub-emulator`) and a Java runtime"
)
STARTUP_TIMEOUT = 90.0
_ENV = {"firestore": "FIRESTORE_EMULATOR_HOST", "pubsub": "PUBSUB_EMULATOR_HOST"}
# What gcloud or java say when a component or the runtime is missing (treated like no gcloud).
_MISSING = ("components install", "is not installed", "java: not found", "unable to locate java")


@dataclass
class Emulator:
    name: str
    host: str  # host:port
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class EmulatorProject(NamedTuple):
    """What a test needs to reach an emulator: ``host`` (host:port) and its own ``project``."""

    host: str
    project: str


class EmulatorUnavailable(Exception):
    """gcloud, an emulator component or Java is missing."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(name: str, logs: Path) -> Emulator:
    host = f"127.0.0.1:{_free_port()}"
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["gcloud", "beta", "emulators", name, "start", f"--host-port={host}", "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # gcloud spawns java: stop the whole group at the end
        )
    return Emulator(name, host, process, log)


def _wait(emulator: Emulator, deadline: float) -> None:
    """Poll the emulator's HTTP port until it answers 200 (both answer "Ok" on GET /)."""
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            tail = emulator.log_tail()
            message = (
                f"the {emulator.name} emulator exited with {emulator.process.returncode}:\n{tail}"
            )
            if any(sign in tail.lower() for sign in _MISSING):
                raise EmulatorUnavailable(message)
            raise RuntimeError(message)
        try:
            with urllib.request.urlopen(f"http://{emulator.host}/", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"the {emulator.name} emulator did not answer on {emulator.host} within "
        f"{STARTUP_TIMEOUT:.0f} s:\n{emulator.log_tail()}"
    )


def _stop(emulator: Emulator) -> None:
    """SIGTERM the process group (gcloud and its java child), SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(emulator.process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        emulator.process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # the java child may outlive gcloud itself
        os.killpg(emulator.process.pid, signal.SIGKILL)
    emulator.process.wait(timeout=10)


def _unavailable(reason: str) -> None:
    """Skip loudly, or fail in CI, where the emulator tests must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{INSTALL_HINT} — CI must run them ({reason})", pytrace=False)
    pytest.skip(f"{INSTALL_HINT} ({reason})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Report every emulator skip at one place, so ``-ra`` folds them into ONE line.

    (pytest reports a fixture's skip at each test's own line: dozens of identical lines.)
    """
    report = yield
    longrepr = getattr(report, "longrepr", None)
    if (
        call.when == "setup"
        and report.skipped
        and isinstance(longrepr, tuple)
        and INSTALL_HINT in str(longrepr[2])
    ):
        report.longrepr = (__file__, _SKIP_LINE, longrepr[2])
    return report


_SKIP_LINE = _unavailable.__code__.co_firstlineno


@pytest.fixture(scope="session")
def emulators() -> Iterator[dict[str, Emulator]]:
    """Both emulators, started in parallel once per session; env vars set for the clients."""
    if shutil.which("gcloud") is None:
        _unavailable("gcloud is not on PATH")
    saved = {var: os.environ.get(var) for var in _ENV.values()}
    with tempfile.TemporaryDirectory(prefix="phonesync-emulators-") as logs:
        started: dict[str, Emulator] = {}
        try:
            for name in _ENV:
                started[name] = _start(name, Path(logs))
            deadline = time.monotonic() + STARTUP_TIMEOUT
            try:
                for emulator in started.values():
                    _wait(emulator, deadline)
            except EmulatorUnavailable as exc:
                _unavailable(str(exc))
            for name, emulator in started.items():
                os.environ[_ENV[name]] = emulator.host
            yield started
        finally:
            for emulator in started.values():
                _stop(emulator)
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value


_projects = iter(range(1, 1_000_000))


@pytest.fixture
def gcp_project(emulators: dict[str, Emulator]) -> Iterator[str]:
    """A fresh project id per test: emulator state (documents, topics) is isolated by project.

    Its Firestore documents are deleted afterwards, so the emulator's memory stays small.
    """
    project = f"phonesync-test-{os.getpid()}-{next(_projects)}"
    yield project
    request = urllib.request.Request(
        f"http://{emulators['firestore'].host}/emulator/v1/projects/{project}"
        "/databases/(default)/documents",
        method="DELETE",
    )
    with contextlib.suppress(OSError):  # best effort: the next test has another project anyway
        urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture
def firestore_emulator(emulators: dict[str, Emulator], gcp_project: str) -> EmulatorProject:
    """The Firestore emulator's host:port and this test's own project id."""
    return EmulatorProject(emulators["firestore"].host, gcp_project)


@pytest.fixture
def pubsub_emulator(emulators: dict[str, Emulator], gcp_project: str) -> EmulatorProject:
    """The Pub/Sub emulator's host:port and this test's own project id (so its own topics)."""
    return EmulatorProject(emulators["pubsub"].host, gcp_project)
