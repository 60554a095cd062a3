"""Running a command in a child process and measuring it: wall time, CPU time, peak RSS."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

# A small Python parent between us and the command: the kernel keeps the peak RSS per process
# tree (RUSAGE_CHILDREN), so each command gets a fresh tree and its own figure, forked
# children of the command included.
_PROBE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
    "wall = time.perf_counter() - start\n"
    "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "sys.stderr.buffer.write(done.stderr)\n"
    "sys.stdout.buffer.write(done.stdout)\n"
    "sys.stdout.write(f'\\n{wall} {use.ru_utime + use.ru_stime} {use.ru_maxrss / 1024}"
    " {done.returncode}\\n')\n"
)


@dataclass(frozen=True, slots=True)
class Measured:
    wall: float  # s
    cpu: float  # s, user + system
    peak_mib: float  # MiB (2**20 bytes)
    stdout: str
    stderr: str


def measured(command: list[str], env: Mapping[str, str] | None = None) -> Measured:
    """Run ``command``; its figures, or SystemExit with its stderr if it failed."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *command],
        capture_output=True,
        text=True,
        check=True,
        env=dict(env) if env is not None else None,
    )
    output, _, figures = done.stdout.rstrip("\n").rpartition("\n")
    wall, cpu, peak_mib, code = figures.split()
    if code != "0":
        raise SystemExit(f"{' '.join(command[:4])} … failed ({code}): {done.stderr.strip()}")
    return Measured(float(wall), float(cpu), float(peak_mib), output, done.stderr)
