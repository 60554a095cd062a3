"""The FHIR simulator in a process of its own, as the benchmarks need it: its work is not
counted in the client's CPU, and a client stalled by its own work shows as such."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def simulator(*options: str, wait_seconds: float = 120.0) -> Iterator[str]:
    """``phonesync fhir-sim OPTIONS`` on a free loopback port: yields its URL (``/fhir`` is the
    FHIR base) once it answers, and stops it on the way out. A large sheet or bundle takes it a
    while to load, hence the generous wait."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "jobs.cli", "fhir-sim", "--port", str(port), *options]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                urllib.request.urlopen(f"{url}/_sim/stats")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the simulator did not start: {' '.join(command)}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait()


def stats(url: str) -> Any:
    """The simulator's ``/_sim/stats``: requests and batch entries by method and status."""
    return json.loads(urllib.request.urlopen(f"{url}/_sim/stats").read())
