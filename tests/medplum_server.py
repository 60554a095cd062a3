"""A real FHIR R4 server for tests: Medplum's FHIR router and in-memory repository (npm).

``tests/medplum/server.mjs`` is a thin Node HTTP adapter around ``@medplum/fhir-router``; its
header says which behaviour is Medplum's and which is the adapter's. ``scripts/install-test-servers``
(run by ``scripts/test``) installs it with ``npm ci`` from the committed lock file.

Fixtures (registered in ``tests/conftest.py``):

- ``medplum_server`` (session): the Node process, started once on a free loopback port; its
  log is printed if it fails to start, and attached to the report of every failed test.
- ``medplum`` (function): the same server emptied and loaded with the sample's
  ``patients_before_phone_update``, request counters at zero. A :class:`MedplumServer`:

  - ``medplum.fhir``: the FHIR base URL (``…/fhir/R4``) to give the job;
  - ``medplum.load(patients)``: replace every stored patient (ids kept, the server assigns
    ``meta``), counters reset;
  - ``medplum.restore(patients)``: the registry restored from a backup: every stored patient
    replaced by these, ``meta`` (version, lastUpdated) as given, counters reset;
  - ``medplum.patients()``: the stored patients, in load order, as the server holds them;
  - ``medplum.requests()`` / ``medplum.entries()`` / ``medplum.puts()``: answered FHIR requests
    and batch Bundle entries by ``"METHOD status"``, successful PUTs (requests or entries) by
    ``"Patient/id"``; ``medplum.reset_stats()``;
  - ``medplum.interpose({"Patient/id": {field: value}})``: another writer sets those fields
    just before our next PUT or PATCH of that patient, a request or a batch entry (the 412
    path); ``medplum.patches()``, ``medplum.writes()``: successful PATCHes, and PUTs + PATCHes;
  - ``medplum.set_mode(write="patch-only", ignore_if_match=True)``: the deployment around
    Medplum answers PUT with 405 and lists only patch; drops If-Match (until the next load).

- ``medplum_patch_only`` (function): ``medplum`` in patch-only mode (the registry of issue 3.2).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent / "medplum"
STARTUP_TIMEOUT = 60.0
INSTALL_HINT = (
    "run `bash scripts/install-test-servers` (scripts/test does) to install Medplum from npm"
)


@dataclass
class MedplumServer:
    url: str  # origin, e.g. http://127.0.0.1:41234
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir/R4"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/_test/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def load(self, patients: list[dict[str, Any]]) -> None:
        self._call("POST", "load", patients)

    def restore(self, patients: list[dict[str, Any]]) -> None:
        self._call("POST", "restore", patients)

    def patients(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "resources?type=Patient")
        return result

    def requests(self) -> dict[str, int]:
        return dict(self._call("GET", "stats")["requests"])

    def entries(self) -> dict[str, int]:
        return dict(self._call("GET", "stats")["entries"])

    def puts(self) -> dict[str, int]:
        return dict(self._call("GET", "stats")["puts"])

    def patches(self) -> dict[str, int]:
        return dict(self._call("GET", "stats")["patches"])

    def writes(self) -> dict[str, int]:
        """Successful PUTs and PATCHes (requests or batch entries) by ``"Patient/id"``."""
        writes = self.puts()
        for target, count in self.patches().items():
            writes[target] = writes.get(target, 0) + count
        return writes

    def set_mode(
        self,
        *,
        write: str | None = None,
        ignore_if_match: bool | None = None,
        metadata_down: bool | None = None,
    ) -> None:
        """The deployment around Medplum (reset by :meth:`load`): ``write="patch-only"`` answers
        PUT with 405 and lists only patch; ``ignore_if_match`` drops If-Match before Medplum;
        ``metadata_down`` answers ``GET metadata`` with 503."""
        wanted: dict[str, Any] = {}
        if metadata_down is not None:
            wanted["metadataDown"] = metadata_down
        if write is not None:
            wanted["write"] = write
        if ignore_if_match is not None:
            wanted["ignoreIfMatch"] = ignore_if_match
        self._call("POST", "mode", wanted)

    def reset_stats(self) -> None:
        self._call("POST", "reset-stats", {})

    def interpose(self, changes: dict[str, dict[str, Any]]) -> None:
        self._call("POST", "interpose", changes)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def node_command() -> list[str]:
    """``node`` with the flag Medplum 5 needs on Node 20 (it asks for Node >= 22)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"Node.js is not on PATH: the FHIR server tests need it ({INSTALL_HINT})")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return [node, "--experimental-websocket"] if major < 22 else [node]


def start(log: Path) -> MedplumServer:
    if not (HERE / "node_modules" / "@medplum" / "fhir-router").is_dir():
        pytest.fail(f"Medplum is not installed in {HERE}: {INSTALL_HINT}", pytrace=False)
    with log.open("wb") as err:
        process = subprocess.Popen(
            [*node_command(), str(HERE / "server.mjs"), "--port", "0"],
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert process.stdout is not None
    stdout = process.stdout
    first: list[bytes] = []
    reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT)
    line = first[0].decode().strip() if first else ""
    if not line.startswith("listening http://127.0.0.1:"):
        stop_process(process)
        raise RuntimeError(
            f"the Medplum FHIR server did not start within {STARTUP_TIMEOUT:.0f} s "
            f"(first line {line!r}):\n{log.read_text(errors='replace')[-3000:]}"
        )
    # Keep draining stdout into the log so the process never blocks on a full pipe.
    threading.Thread(target=_drain, args=(process, log), daemon=True).start()
    return MedplumServer(line.removeprefix("listening "), process, log)


def _drain(process: subprocess.Popen[bytes], log: Path) -> None:
    assert process.stdout is not None
    with log.open("ab") as out:
        for chunk in process.stdout:
            out.write(chunk)
            out.flush()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def medplum_server() -> Iterator[MedplumServer]:
    """Medplum's FHIR router on a free loopback port, once per session."""
    with tempfile.TemporaryDirectory(prefix="phonesync-medplum-") as logs:
        server = start(Path(logs) / "medplum.log")
        try:
            yield server
        finally:
            stop_process(server.process)


@pytest.fixture
def medplum(medplum_server: MedplumServer) -> Iterator[MedplumServer]:
    """The server with the sample's patients loaded and counters at zero (see module docs)."""
    from tests.simulator import sample

    if medplum_server.process.poll() is not None:
        pytest.fail(f"the Medplum FHIR server has exited:\n{medplum_server.log_tail()}")
    medplum_server.load(sample())
    size = medplum_server.log.stat().st_size
    yield medplum_server
    # What the server logged during the test; pytest shows it only when the test failed.
    with contextlib.suppress(OSError), medplum_server.log.open("rb") as log:
        log.seek(size)
        text = log.read().decode(errors="replace").strip()
        if text:
            print(f"--- Medplum FHIR server log ---\n{text[-5000:]}", file=sys.stderr)


@pytest.fixture
def medplum_patch_only(medplum: MedplumServer) -> MedplumServer:
    """``medplum`` answering PUT with 405 and listing only ``patch`` (reset by the next load)."""
    medplum.set_mode(write="patch-only")
    return medplum
