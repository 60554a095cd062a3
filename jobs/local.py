"""``phonesync run --tasks N`` on a laptop: N task processes, split exactly as Cloud Run splits.

Each child gets ``CLOUD_RUN_TASK_INDEX`` / ``CLOUD_RUN_TASK_COUNT`` / ``CLOUD_RUN_EXECUTION``
and runs the same code as a Cloud Run task; their JSON logs go to files under the state
folder. The parent only watches the shared store and draws progress.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from common.config import Settings, jakarta_today
from common.store import RunState, RunStatus, StateStore
from jobs import wording
from jobs.operator import sum_counts


def run_tasks(config: Settings, tasks: int, store: StateStore, out: TextIO = sys.stderr) -> int:
    run_date = store.bind_execution_date(
        config.execution, (config.run_date or jakarta_today()).isoformat()
    )
    log_dir = Path(config.state_path).parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **config.to_env(),  # the parent's settings, flags and secrets included
        "CLOUD_RUN_TASK_COUNT": str(tasks),
        "RUN_DATE": run_date,
        "LOG_FORMAT": "json",  # the task logs are read as Cloud Run's (tests/test_log_metrics.py)
    }
    children: list[tuple[subprocess.Popen[bytes], TextIO]] = []
    for index in range(tasks):
        log = open(log_dir / f"{config.execution}-task-{index}.jsonl", "w")  # noqa: SIM115 (closed below)
        child_env = {**env, "CLOUD_RUN_TASK_INDEX": str(index)}
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "run"],
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        children.append((process, log))
    print(
        f"phonesync run {run_date}: {wording.count(tasks, 'task')}, execution {config.execution}, logs in {log_dir}/",
        file=out,
    )
    started = time.monotonic()
    interactive = out.isatty()
    last_line = 0.0
    while any(p.poll() is None for p, _ in children):
        time.sleep(0.5)
        if interactive or time.monotonic() - last_line >= 5:
            last_line = time.monotonic()
            _draw(store, run_date, started, out, interactive)
    _draw(store, run_date, started, out, interactive)
    if interactive:
        print(file=out)
    codes = [p.wait() for p, _ in children]
    for _, child_log in children:
        child_log.close()
    run = store.get_run(run_date)
    if run is not None and run.execution != config.execution:
        print(
            f"{run_date} is held by execution {run.execution} ({run.status.value}); this run did nothing",
            file=out,
        )
        return exit_code(codes)
    print(summary(run, codes), file=out)
    return exit_code(codes)


def exit_code(codes: list[int]) -> int:
    """0 only when every task exited 0. A task killed by signal N (``Popen`` reports -N) counts
    as ``128 + N``, as a shell says it; otherwise the highest code."""
    return max((128 - code if code < 0 else code for code in codes), default=0)


def _draw(store: StateStore, run_date: str, started: float, out: TextIO, interactive: bool) -> None:
    shards = store.shard_states(run_date)
    run = store.get_run(run_date)
    total = run.total_rows if run and run.total_rows else sum(s.total for s in shards)
    decided = total - sum(s.total for s in shards) if run and run.manifest_ready else 0
    done = decided + sum(s.done for s in shards)
    counts = sum_counts(shards)
    ok = sum(counts.get(s, 0) for s in ("updated", "unchanged", "already_applied"))
    failed = sum(counts.get(s, 0) for s in ("deferred", "error"))
    elapsed = time.monotonic() - started
    synced = sum(s.done for s in shards)
    rate = synced / elapsed if elapsed > 0 else 0.0
    remaining = total - done
    eta = f"{remaining / rate:.0f} s" if rate > 0 and remaining > 0 else "-"
    line = f"{done}/{total} rows | ok {ok} | failed {failed} | {rate:.0f} rows/s | ETA {eta}"
    print(
        ("\r" + line.ljust(78)) if interactive else line,
        end="" if interactive else "\n",
        file=out,
        flush=True,
    )


def summary(run: RunState | None, codes: list[int]) -> str:
    if run is None:
        return "no run recorded (see the task logs)"
    lines = [f"run {run.run_date}: {run.status.value}" + (f" ({run.reason})" if run.reason else "")]
    lines += [f"  {status:<16} {count}" for status, count in run.counts.items()]
    if not run.counts and run.status is not RunStatus.FAILED:  # a failed run read no rows
        lines.append("  no rows in the sheet")
    if any(codes):
        lines.append(f"  task exit codes: {codes}")
    return "\n".join(lines)
