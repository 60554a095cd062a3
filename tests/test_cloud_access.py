"""Google Cloud out of reach (no credentials, an emulator that does not answer): every command
says in one line what is missing and how to provide it, exits 7 (not one of `phonesync status`'s
codes), shows no traceback and does not hang; on Cloud Run it is one ``cloud_access_failed`` line.

The commands run as a new user runs them: a child process with no Application Default
Credentials (GOOGLE_APPLICATION_CREDENTIALS naming a file that does not exist, HOME an empty
folder, the metadata server's address a loopback port nobody listens on).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.auth.exceptions import DefaultCredentialsError

from common import telemetry
from common.cloud_access import (
    EMULATOR_CONNECT_SECONDS,
    CloudAccessError,
    as_cloud_access_error,
    check_emulator,
)
from common.config import ENV_VARS
from common.store import RunStatus
from jobs.cli import EXIT_CLOUD_ACCESS
from jobs.operator import STATUS_EXIT
from tests.simulator import API_KEY, ROOT, SAMPLE_SHEET, simulator
from tests.test_replay_cli import outage_run

DATE = "2025-09-23"
FHIR = "http://127.0.0.1:9/fhir"  # never reached: the store (or secret) comes first
RUN = ["run", "--date", DATE, "--sheet", str(SAMPLE_SHEET), "--fhir-url", FHIR]
#: Every command that opens the store, as the runbook types them.
COMMANDS = {
    "status": ["status", "--date", DATE],
    "report": ["report", "--date", DATE],
    "replay --dry-run": ["replay", "--date", DATE, "--dry-run"],
    "replay --via pubsub": ["replay", "--date", DATE, "--via", "pubsub", "--topic", "failures"],
    "replay --via direct": ["replay", "--date", DATE, "--via", "direct", "--fhir-url", FHIR],
    "run --tasks 2": [*RUN, "--tasks", "2"],
    "run": RUN,
}
FIRESTORE = {
    "STATE_BACKEND": "firestore",
    "GOOGLE_CLOUD_PROJECT": "phonesync-test",
    "FAILURE_TOPIC": "failures",
    "FHIR_API_KEY": API_KEY,
    "LEDGER_KEY": "a-local-ledger-key",
}
HOW_TO = (
    "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a"
    " service account key file"
)
#: Before: 34 lines of traceback (no credentials), or minutes of retries (no emulator).
BOUND_SECONDS = 30


def refusing_address() -> str:
    """host:port of a loopback port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def no_credentials(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with no way to Google Cloud, and none of phonesync's settings."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    nowhere = refusing_address()
    gone = {
        *ENV_VARS,
        *telemetry.CLOUD_RUN_VARIABLES,
        "FIRESTORE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
        "CLOUDSDK_CONFIG",
    }
    return {
        **{k: v for k, v in os.environ.items() if k not in gone},
        "HOME": str(home),
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no-such-key.json"),
        "GCE_METADATA_HOST": nowhere,
        "GCE_METADATA_IP": nowhere,
        "GCE_METADATA_DETECT_RETRIES": "1",  # one refused look, not three with backoff
        "STATE_PATH": str(tmp_path / "state" / "s.db"),
        **extra,
    }


def phonesync(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BOUND_SECONDS,
    )


def refused_in_one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == EXIT_CLOUD_ACCESS, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("phonesync: error: ")
    return line.removeprefix("phonesync: error: ")


def test_the_exit_code_is_not_a_run_status() -> None:
    assert EXIT_CLOUD_ACCESS not in {*STATUS_EXIT.values(), 2, 6}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_no_credentials_is_one_line_saying_how_to_provide_them(
    command: list[str], tmp_path: Path
) -> None:
    env = no_credentials(tmp_path, **FIRESTORE)
    message = refused_in_one_line(phonesync(command, env, tmp_path))
    key = env["GOOGLE_APPLICATION_CREDENTIALS"]
    assert message == (
        f"no Google Cloud credentials for Firestore (GOOGLE_APPLICATION_CREDENTIALS={key}:"
        f" File {key} was not found.): {HOW_TO}, or set FIRESTORE_EMULATOR_HOST to a running"
        " emulator's HOST:PORT"
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_an_emulator_that_refuses_connections_is_one_line_at_once(
    command: list[str], tmp_path: Path
) -> None:
    emulator = refusing_address()
    env = no_credentials(tmp_path, **FIRESTORE, FIRESTORE_EMULATOR_HOST=emulator)
    started = time.monotonic()
    message = refused_in_one_line(phonesync(command, env, tmp_path))
    assert time.monotonic() - started < BOUND_SECONDS
    assert message == (
        f"the Firestore emulator at FIRESTORE_EMULATOR_HOST={emulator} does not answer"
        " (connection refused): start it there (gcloud beta emulators firestore start"
        f" --host-port={emulator}), or unset FIRESTORE_EMULATOR_HOST"
    )


def test_cloud_run_gets_one_json_line_instead(tmp_path: Path) -> None:
    """The same on Cloud Run (a job's task): one ERROR line, exit 7 (retried, as every
    non-zero exit is: there, no credentials means the metadata server did not answer)."""
    cloud_run = {"CLOUD_RUN_JOB": "phonesync", "CLOUD_RUN_EXECUTION": "phonesync-x7k2p"}
    env = no_credentials(tmp_path, **FIRESTORE, **cloud_run)
    done = phonesync(RUN, env, tmp_path)
    assert done.returncode == EXIT_CLOUD_ACCESS and done.stderr == ""
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]
    assert (line["event"], line["severity"]) == ("cloud_access_failed", "ERROR")
    assert line["reason"].startswith("no Google Cloud credentials for Firestore (")
    assert (
        HOW_TO in line["reason"]
        and line["message"] == f"cannot reach Google Cloud: {line['reason']}"
    )


def test_a_secret_out_of_reach_stops_a_local_run_before_any_task(tmp_path: Path) -> None:
    """A local store, but the API key named in Secret Manager: the parent reads it first."""
    secret = {"FHIR_API_KEY_SECRET": "projects/phonesync-test/secrets/fhir-api-key"}
    env = no_credentials(tmp_path, **secret)
    message = refused_in_one_line(phonesync(COMMANDS["run --tasks 2"], env, tmp_path))
    assert message.startswith("no Google Cloud credentials for Secret Manager (")
    assert not (tmp_path / "state" / "logs").exists()  # no task was started


@pytest.mark.slow
def test_a_pubsub_emulator_that_refuses_connections(tmp_path: Path) -> None:
    emulator = refusing_address()
    env = no_credentials(
        tmp_path, PUBSUB_EMULATOR_HOST=emulator, GOOGLE_CLOUD_PROJECT="phonesync-test"
    )
    with simulator() as sim:
        outage_run(sim, Path(env["STATE_PATH"]))  # rows deferred, for replay to re-publish
    expected = (
        f"the Pub/Sub emulator at PUBSUB_EMULATOR_HOST={emulator} does not answer (connection"
        f" refused): start it there (gcloud beta emulators pubsub start --host-port={emulator}),"
        " or unset PUBSUB_EMULATOR_HOST"
    )
    done = phonesync(COMMANDS["replay --via pubsub"], env, tmp_path)
    assert done.stderr.splitlines()[-1] == f"phonesync: error: {expected}"  # after the listing
    assert done.returncode == EXIT_CLOUD_ACCESS and "Traceback" not in done.stderr
    run = phonesync([*COMMANDS["run --tasks 2"]], {**env, "FAILURE_TOPIC": "failures"}, tmp_path)
    assert refused_in_one_line(run) == expected


def test_an_emulator_that_never_answers_is_given_up_on_in_seconds() -> None:
    """A host that drops the connection attempt (here: a listener whose queue is full)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        queued = [socket.socket() for _ in range(3)]
        for client in queued:
            client.setblocking(False)
            client.connect_ex(listener.getsockname())
        started = time.monotonic()
        with pytest.raises(CloudAccessError) as refused:
            check_emulator("Firestore", "FIRESTORE_EMULATOR_HOST", host)
        waited = time.monotonic() - started
        for client in queued:
            client.close()
    assert EMULATOR_CONNECT_SECONDS <= waited < EMULATOR_CONNECT_SECONDS + 2
    assert f"FIRESTORE_EMULATOR_HOST={host} does not answer (timed out after 2 s)" in str(
        refused.value
    )


def test_an_emulator_host_without_a_port_is_named() -> None:
    with pytest.raises(CloudAccessError, match="FIRESTORE_EMULATOR_HOST=localhost: expected HOST"):
        check_emulator("Firestore", "FIRESTORE_EMULATOR_HOST", "localhost")


def test_google_auths_own_error_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client opened without common.cloud_access still ends in the one line (jobs/cli.py)."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    refused = as_cloud_access_error(
        DefaultCredentialsError("Your default credentials were not found.")
    )
    assert str(refused) == (
        "no Google Cloud credentials: run `gcloud auth application-default login`, or set"
        " GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
    )
    assert as_cloud_access_error(ValueError("no")) is None


@pytest.mark.slow
def test_a_sheet_read_without_credentials_fails_the_run_with_that_line(tmp_path: Path) -> None:
    """Task 0 reads the sheet after taking the date: its run fails, the reason says what to do."""
    env = no_credentials(tmp_path, FHIR_API_KEY=API_KEY)
    with simulator() as sim:
        args = ["run", "--date", DATE, "--sheet-id", "officers-sheet", "--fhir-url", sim.fhir]
        done = phonesync([*args, "--tasks", "1"], env, tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    status = phonesync(["status", "--date", DATE], env, tmp_path)
    assert status.returncode == STATUS_EXIT[RunStatus.FAILED]
    assert (
        f"run {DATE}: failed — no Google Cloud credentials for the Sheets API"
        f" (GOOGLE_APPLICATION_CREDENTIALS={env['GOOGLE_APPLICATION_CREDENTIALS']}"
    ) in status.stdout
