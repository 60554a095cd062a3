"""Fail fast on a wrong base URL: task 0 reads ``GET [base]/metadata`` before the sheet, and a
run against anything but a FHIR R4 server with Patient search and a write (update or patch) fails with one line
naming the cause, before any row is touched.

The wrong servers are real HTTP endpoints: the simulator's root, a web page, and the simulator
serving another CapabilityStatement. The job runs as ``phonesync run --tasks 2`` processes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.config import load_settings
from common.fhir import (
    FhirAuthError,
    FhirClient,
    FhirServerUnfit,
    FhirSettings,
    FhirTransientError,
    parse_capability_statement,
)
from common.store import RunStatus, SqliteStore
from jobs.task import run_task
from sim.app import capability_statement
from tests.simulator import API_KEY, SAMPLE_SHEET, run_cli, simulator

DATE = "2025-09-23"
UNFIT = "is not a FHIR R4 server with Patient search and a write (update or patch)"

# Slow (~25 s): runs that wait out retries against unfit servers. Not in scripts/test-fast.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def stu3() -> dict[str, Any]:
    """An STU3 server's CapabilityStatement (same shape; fhirVersion 3.0.2)."""
    return {**capability_statement(batch=True), "fhirVersion": "3.0.2"}


def without_patient_update() -> dict[str, Any]:
    """An R4 server on which Patient can be searched and read, not updated."""
    statement = copy.deepcopy(capability_statement(batch=True))
    (patient,) = statement["rest"][0]["resource"]
    patient["interaction"] = [{"code": "read"}, {"code": "search-type"}]
    return statement


@contextmanager
def web_page() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering every request with a 200 HTML page; the paths it was asked."""
    asked: list[str] = []

    class Page(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            asked.append(f"{self.command} {self.path}")
            body = b"<!doctype html><html><body>Welcome to the portal</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def local_run(fhir_url: str, state: Path) -> Any:
    """``phonesync run --tasks 2`` on the sample sheet, as an operator types it."""
    return run_cli(
        "run",
        "--date",
        DATE,
        "--sheet",
        str(SAMPLE_SHEET),
        "--fhir-url",
        fhir_url,
        "--tasks",
        "2",
        "--state",
        str(state),
        env={"FHIR_API_KEY": API_KEY, "FHIR_BACKOFF_SECONDS": "0.01"},
        timeout=60,
    )


def stored(state: Path) -> tuple[Any, list[Any], list[Any]]:
    """The run, its outcomes and task 0's shard."""
    store = SqliteStore(state)
    try:
        run = store.get_run(DATE)
        shard = store.read_shard(DATE, run.execution, 0) if run else None
        return run, store.outcomes(DATE), shard or []
    finally:
        store.close()


def events(state: Path, task: int) -> list[dict[str, Any]]:
    (log,) = (state.parent / "logs").glob(f"*-task-{task}.jsonl")
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def assert_failed_before_any_row(
    done: Any, state: Path, base_url: str, cause: str
) -> dict[str, Any]:
    """The run failed with one line naming the base URL and ``cause``; nothing else happened."""
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if UNFIT in line]
    assert lines == [f"run {DATE}: failed (FHIR_BASE_URL {base_url} {UNFIT} ({cause}))"]
    assert "task exit codes: [1, 1]" in done.stderr
    run, outcomes, shard = stored(state)
    assert run.status is RunStatus.FAILED and cause in run.reason
    assert outcomes == [] and shard == []  # the sheet was not even planned
    (failed,) = [e for e in events(state, 0) if e.get("event") == "run_failed"]
    assert failed["severity"] == "ERROR" and failed["unexpected"] is False
    (stopped,) = [e for e in events(state, 1) if e.get("event") == "task_stopped"]
    assert stopped["reason"] == run.reason
    status = run_cli("status", "--date", DATE, "--state", str(state))
    assert status.returncode == 1 and run.reason in status.stdout
    logs = [log.read_text() for log in (state.parent / "logs").glob("*.jsonl")]
    for text in (done.stderr, done.stdout, status.stdout, run.reason, *logs):
        assert API_KEY not in text
    return failed


@pytest.mark.parametrize(
    ("served", "cause"),
    [
        (stu3, "GET metadata: 200: fhirVersion is 3.0.2, not R4 (4.0.x)"),
        (without_patient_update, "GET metadata: 200: Patient lacks update and patch"),
    ],
    ids=["stu3", "no-patient-update"],
)
def test_a_server_of_another_kind_fails_the_run_before_any_row(
    tmp_path: Path, served: Any, cause: str
) -> None:
    state = tmp_path / "s.db"
    with simulator() as sim:
        sim.state.capability_statement = served()
        done = local_run(sim.fhir, state)
        # One request reached the server: task 0's GET metadata. No search, read or update.
        assert sim.state.stats() == {
            "requests": {"GET metadata": 1},
            "entries": {},
            "puts_by_patient": {},
        }
    assert_failed_before_any_row(done, state, sim.fhir, cause)


def test_the_simulators_root_is_not_a_fhir_base(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    with simulator() as sim:
        done = local_run(sim.url, state)  # the /fhir left out
        assert sim.state.stats()["requests"] == {}
    assert_failed_before_any_row(done, state, sim.url, "GET metadata: 404: Not Found")


def test_a_web_page_is_not_a_fhir_base(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    with web_page() as (url, asked):
        done = local_run(f"{url}/fhir", state)
    assert asked == ["GET /fhir/metadata"]  # and nothing else: no row was sent there
    assert_failed_before_any_row(
        done, state, f"{url}/fhir", "GET metadata: 200: the answer is not a JSON object"
    )


def job_env(fhir_url: str, state: Path, index: int, **extra: str) -> dict[str, str]:
    return {
        "FHIR_BASE_URL": fhir_url,
        "FHIR_API_KEY": API_KEY,
        "SHEET_CSV": str(SAMPLE_SHEET),
        "RUN_DATE": DATE,
        "STATE_PATH": str(state),
        "FHIR_BACKOFF_SECONDS": "0.01",
        "CLOUD_RUN_TASK_INDEX": str(index),
        "CLOUD_RUN_TASK_COUNT": "2",
        "CLOUD_RUN_EXECUTION": "exec-1",
        **extra,
    }


def run_job(fhir_url: str, state: Path, **extra: str) -> list[int]:
    """Task 0, then task 1, in this process (task 1 finds task 0's verdict in the store)."""
    return [run_task(load_settings(job_env(fhir_url, state, i, **extra))) for i in range(2)]


def test_a_server_that_does_not_answer_is_an_outage_not_a_wrong_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No answer says nothing about the URL: the run goes on with a warning and its rows meet
    the outage as rows do (deferred, for the replay function), instead of a failed run whose
    other tasks stop for good."""
    with socket.socket() as free:  # a port nothing listens on: connection refused
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    base = f"http://127.0.0.1:{port}/fhir"
    state = tmp_path / "s.db"
    with caplog.at_level("WARNING"):
        codes = run_job(base, state, FHIR_MAX_ATTEMPTS="2", FHIR_DEADLINE_SECONDS="1")
    assert codes == [0, 0]
    run, outcomes, shard = stored(state)
    assert run.status is RunStatus.PARTIAL
    assert shard and outcomes and {o.status for o in outcomes} == {"deferred"}
    unchecked = [
        r for r in caplog.records if getattr(r, "json_fields", {}).get("event") == "fhir_unchecked"
    ]
    assert len(unchecked) == 1
    assert unchecked[0].getMessage().startswith(f"the FHIR server at {base} could not be checked")


@pytest.mark.parametrize("batch", ["0", "auto"], ids=["per-row", "batch"])
def test_the_simulator_passes_and_each_task_asks_metadata_at_most_once(
    tmp_path: Path, batch: str
) -> None:
    with simulator() as sim:
        assert run_job(sim.fhir, tmp_path / "s.db", FHIR_BATCH_SIZE=batch) == [0, 0]
        requests = sim.state.requests
        # Task 0's check is the one request: run first, task 0 synced both shards (task 1
        # found them finished), and its batch decision, for both, reuses the check's answer.
        assert requests["GET metadata"] == 1
        assert (requests["POST 200"] > 0) == (batch == "auto")
    run, _, _ = stored(tmp_path / "s.db")
    assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 10}


# --- the check itself, on answers a loopback server does not give --------------------------


def client(answer: Any, base_url: str = "http://registry.example/fhir") -> FhirClient:
    settings = FhirSettings(
        base_url=base_url,
        api_key=API_KEY,
        rate_limit=0,
        backoff_seconds=0.001,
        backoff_cap_seconds=0.01,
        max_attempts=3,
    )
    return FhirClient(settings, transport=httpx.MockTransport(answer))


def check(answers: list[httpx.Response], base_url: str = "http://registry.example/fhir") -> Any:
    """What ``checked_capabilities`` gives (or raises) on these answers, and the requests."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return answers.pop(0)

    async def go() -> Any:
        async with client(answer, base_url) as fhir:
            first: Any
            try:
                first = await fhir.checked_capabilities()
            except Exception as exc:
                first = exc
            try:  # the batch decision asks again: the same answer, no second request
                again: Any = await fhir.capabilities()
            except Exception as exc:
                again = exc
            return first, again

    first, again = asyncio.run(go())
    return first, again, asked


def test_transient_answers_are_retried_then_the_check_passes() -> None:
    ok = httpx.Response(200, json=capability_statement(batch=False))
    first, again, asked = check(
        [httpx.Response(503), httpx.Response(429, headers={"Retry-After": "0"}), ok]
    )
    assert first == again and first.fhir_version == "4.0.1" and not first.batch
    assert asked == ["/fhir/metadata"] * 3


def test_a_server_still_failing_after_the_retries_is_transient_not_unfit() -> None:
    first, again, asked = check([httpx.Response(503)] * 3)
    assert type(first) is FhirTransientError and "after 3 attempts" in str(first)
    assert again is first and len(asked) == 3


def test_refused_credentials_are_not_a_verdict_on_the_url() -> None:
    first, again, asked = check([httpx.Response(401)])
    assert type(first) is FhirAuthError and again is first and len(asked) == 1


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (httpx.Response(200, json={"resourceType": "Bundle"}), "not a CapabilityStatement"),
        (httpx.Response(200, json=[1, 2]), "the answer is not a JSON object"),
        (httpx.Response(200, json={**capability_statement(True), "fhirVersion": "5.0.0"}), "5.0.0"),
        (
            httpx.Response(200, json={**capability_statement(True), "fhirVersion": None}),
            "fhirVersion is (missing)",
        ),
        (httpx.Response(200, json={**capability_statement(True), "rest": []}), "search-type and"),
        (httpx.Response(302, headers={"Location": "https://login.example/"}), "redirect"),
        (httpx.Response(406), "GET metadata: 406"),
    ],
    ids=["bundle", "json-list", "r5", "no-version", "no-patient", "redirect", "406"],
)
def test_what_counts_as_a_wrong_server(answer: httpx.Response, cause: str) -> None:
    first, _, asked = check([answer], "https://user:pass@registry.example/fhir/R4?token=t0k3n")
    assert type(first) is FhirServerUnfit and len(asked) == 1
    text = str(first)
    assert text.startswith(f"FHIR_BASE_URL https://registry.example/fhir/R4 {UNFIT} (")
    assert cause in text
    for secret in ("pass", "t0k3n", API_KEY):
        assert secret not in text


def test_the_simulators_and_medplums_statements_pass_the_same_checks() -> None:
    """What we check, the simulator says as Medplum does (tests/medplum/server.mjs, as
    Medplum's metadata.ts builds it): fhirVersion 4.0.1, Patient search-type and update."""
    for batch in (True, False):
        assert parse_capability_statement(capability_statement(batch)).unfit_because() is None
    assert parse_capability_statement(stu3()).unfit_because() is not None
    assert parse_capability_statement(without_patient_update()).unfit_because() is not None
