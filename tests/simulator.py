"""Test helpers: the FHIR simulator on loopback, loaded with the sample patients."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim._state import SimState
from sim.app import create_app
from sim.server import run_in_thread

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE_SHEET = EXAMPLES / "whatsapp-sheet.csv"
SAMPLE_BUNDLE = EXAMPLES / "patients-data.json"
API_KEY = "test-api-key"


def sample(key: str = "patients_before_phone_update") -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(SAMPLE_BUNDLE.read_text())[key]]


@dataclass
class RunningSim:
    url: str  # base URL without /fhir
    state: SimState

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    def bundle(self) -> list[dict[str, Any]]:
        """The patients as the server now holds them, in their original order."""
        return [e["resource"] for e in self.state.bundle()["patients_after_phone_update"]]


ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``phonesync ARGS`` in a child process, as an operator or Cloud Run would start it.

    It runs in ``cwd`` or a fresh temporary folder, never the checkout: a default relative path
    (``.phonesync/``) must not land in the repository.
    """
    with tempfile.TemporaryDirectory(prefix="phonesync-cli-") as scratch:
        return subprocess.run(
            [sys.executable, "-m", "jobs.cli", *args],
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            cwd=cwd or scratch,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def run_on_terminal(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> tuple[int, str]:
    """``phonesync ARGS`` with a pseudo-terminal as its stdout and stderr, as a person at a
    terminal runs it (``env`` is its whole environment): the exit code and what it showed."""
    import pty
    import select

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while select.select([leader], [], [], max(deadline - time.monotonic(), 0))[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every process holding the terminal has ended
                break
            if not chunk:
                break
            shown += chunk
        else:
            process.kill()
            raise TimeoutError(f"phonesync {' '.join(args)}: still running after {timeout} s")
    finally:
        os.close(leader)
    return process.wait(timeout), shown.decode().replace("\r\n", "\n")


@contextmanager
def simulator(patients: list[dict[str, Any]] | None = None, **options: Any) -> Iterator[RunningSim]:
    options.setdefault("api_key", API_KEY)
    app = create_app(copy.deepcopy(patients if patients is not None else sample()), **options)
    with run_in_thread(app) as url:
        yield RunningSim(url, app.state.sim)


def without_last_updated(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(patients)
    for p in out:
        p.get("meta", {}).pop("lastUpdated", None)
    return out
