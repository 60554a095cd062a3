"""`phonesync replay`: pick deferred/error rows of a date and replay them (local) or re-publish them."""

import asyncio
import dataclasses
import io
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from common import telemetry
from common.config import load_settings
from common.failures import FailureMessage, topic_path
from common.outcomes import Status
from common.privacy import mask_nik
from common.replay import replay_directly
from common.store import SqliteStore
from jobs.cli import main
from jobs.task import run_task
from sim.app import capability_statement
from tests.simulator import API_KEY, SAMPLE_SHEET, RunningSim, simulator

DATE = "2025-09-23"


def outage_run(sim: RunningSim, state: Path) -> None:
    """The sample's run while the registry is down (it stays down): every row deferred."""
    sim.state.set_down(True)
    env = {
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "SHEET_CSV": str(SAMPLE_SHEET),
        "RUN_DATE": DATE,
        "STATE_PATH": str(state),
        "FHIR_DEADLINE_SECONDS": "0.3",
        "FHIR_MAX_ATTEMPTS": "2",
        "FHIR_BACKOFF_SECONDS": "0.01",
        "CLOUD_RUN_EXECUTION": "exec-1",
    }
    assert run_task(load_settings(env)) == 0


def test_local_replay_of_chosen_rows_with_dry_run_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s.db"
    monkeypatch.setenv("FHIR_API_KEY", API_KEY)
    monkeypatch.delenv("FAILURE_TOPIC", raising=False)
    with simulator() as sim:
        outage_run(sim, state)
        sim.state.set_down(False)
        sim.state.reset_stats()
        listing = ["replay", "--date", DATE, "--state", str(state)]
        # a dry run needs the store only: no FHIR settings, no mode
        assert main([*listing, "--row", "2", "3", "--dry-run"]) == 0
        assert "2 deferred rows of 2025-09-23 to replay" in capsys.readouterr().err
        assert main([*listing, "--row", "2", "--dry-run"]) == 0
        assert "1 deferred row of 2025-09-23 to replay" in capsys.readouterr().err
        assert main([*listing, "--status", "error", "--dry-run"]) == 0
        assert "no error rows of 2025-09-23 to replay" in capsys.readouterr().err
        assert sim.state.puts_by_patient == {}
        # the mode is never guessed from the environment
        assert main([*listing, "--fhir-url", sim.fhir]) == 2
        assert "--via pubsub" in capsys.readouterr().err and sim.state.puts_by_patient == {}
        args = [*listing, "--via", "direct", "--fhir-url", sim.fhir]
        assert main([*args, "--row", "2", "3"]) == 0
        assert "replayed: updated 2" in capsys.readouterr().err
        assert dict(sim.state.puts_by_patient) == {"patient-001": 1, "patient-002": 1}
        assert main([*args, "--row", "2"]) == 2  # row 2 is no longer deferred
        assert "rows [2] are not deferred" in capsys.readouterr().err
        assert main(args) == 0  # the other 8
        assert len(sim.state.puts_by_patient) == 10
        assert main(["status", "--date", DATE, "--state", str(state)]) == 0
        assert "run 2025-09-23: succeeded" in capsys.readouterr().out


def test_direct_replay_ignores_a_failure_topic_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s.db"
    monkeypatch.setenv("FHIR_API_KEY", API_KEY)
    monkeypatch.setenv("FAILURE_TOPIC", "phonesync-failures")  # set, but --via says direct
    with simulator() as sim:
        outage_run(sim, state)
        sim.state.set_down(False)
        args = ["replay", "--date", DATE, "--state", str(state), "--row", "2"]
        assert main([*args, "--via", "direct", "--fhir-url", sim.fhir]) == 0
        assert "directly against" in capsys.readouterr().err
        assert dict(sim.state.puts_by_patient) == {"patient-001": 1}


def test_replay_republishes_to_the_failure_topic(
    tmp_path: Path, gcp_project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "s.db"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.create_topic(name=topic_path(gcp_project, "failures"))
    subscription = subscriber.subscription_path(gcp_project, "replay")
    subscriber.create_subscription(name=subscription, topic=topic_path(gcp_project, "failures"))
    with simulator() as sim:
        outage_run(sim, state)
    monkeypatch.setenv("FAILURE_TOPIC", "failures")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", gcp_project)
    monkeypatch.setenv("FHIR_BASE_URL", sim.fhir)  # set, but --via says pubsub: no FHIR call
    args = ["replay", "--date", DATE, "--state", str(state), "--row", "4", "5"]
    assert main([*args, "--via", "pubsub"]) == 0
    pulled = subscriber.pull(
        subscription=subscription, max_messages=10, timeout=10
    ).received_messages
    messages = sorted(
        (FailureMessage.from_json(m.message.data) for m in pulled), key=lambda m: m.row
    )
    assert [m.row for m in messages] == [4, 5]
    assert messages[0].nik == "3273044812940003" and "operator" in messages[0].reason
    assert os.environ["FAILURE_TOPIC"] == "failures"


def test_direct_replay_against_a_wrong_server_stops_before_any_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--via direct` checks `GET [base]/metadata` first, as the job does: a mistyped
    --fhir-url is one line and exit 2, and the rows stay deferred, untouched."""
    state = tmp_path / "s.db"
    monkeypatch.setenv("FHIR_API_KEY", API_KEY)
    monkeypatch.delenv("FAILURE_TOPIC", raising=False)
    with simulator() as sim:
        outage_run(sim, state)
        sim.state.set_down(False)
        sim.state.reset_stats()
        capsys.readouterr()
        args = ["replay", "--date", DATE, "--state", str(state), "--via", "direct"]
        unfit = "is not a FHIR R4 server with Patient search and a write (update or patch)"
        assert main([*args, "--fhir-url", sim.url]) == 2  # the /fhir left out
        errors = [e for e in capsys.readouterr().err.splitlines() if "error" in e]
        assert errors == [
            f"phonesync: error: FHIR_BASE_URL {sim.url} {unfit} (GET metadata: 404: Not Found)"
        ]
        sim.state.capability_statement = {
            **capability_statement(batch=True),
            "fhirVersion": "3.0.2",
        }
        assert main([*args, "--fhir-url", sim.fhir]) == 2
        err = capsys.readouterr().err
        assert "(GET metadata: 200: fhirVersion is 3.0.2, not R4 (4.0.x))" in err
        assert API_KEY not in err
        assert sim.state.stats() == {
            "requests": {"GET metadata": 1},
            "entries": {},
            "puts_by_patient": {},
        }
    store = SqliteStore(state)
    try:
        assert {o.status for o in store.outcomes(DATE)} == {"deferred"}
    finally:
        store.close()


def test_direct_replay_against_a_server_that_does_not_answer_exits_1_before_any_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unlike the job (whose rows wait an outage out), an operator's replay stops at once when
    the server does not answer: exit 1 with one line, the rows still deferred."""
    state = tmp_path / "s.db"
    monkeypatch.setenv("FHIR_API_KEY", API_KEY)
    monkeypatch.setenv("FHIR_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("FHIR_BACKOFF_SECONDS", "0.01")
    monkeypatch.delenv("FAILURE_TOPIC", raising=False)
    with simulator() as sim:
        outage_run(sim, state)
    with socket.socket() as free:  # a port nothing listens on: connection refused
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    capsys.readouterr()
    args = ["replay", "--date", DATE, "--state", str(state), "--via", "direct"]
    assert main([*args, "--fhir-url", f"http://127.0.0.1:{port}/fhir"]) == 1
    errors = [e for e in capsys.readouterr().err.splitlines() if "error" in e]
    assert len(errors) == 1
    assert errors[0].startswith("phonesync: error: the FHIR server did not answer: GET metadata")
    store = SqliteStore(state)
    try:
        assert {o.status for o in store.outcomes(DATE)} == {"deferred"}
    finally:
        store.close()


def test_direct_replay_checks_rows_as_the_replay_function_does(tmp_path: Path) -> None:
    """``--via direct`` replays through the function's path, checks included: a row that is
    not one the run planned is logged and counted ``malformed``, never recorded or applied."""
    state = tmp_path / "s.db"
    with simulator() as sim:
        outage_run(sim, state)
        sim.state.set_down(False)
        sim.state.reset_stats()
        store = SqliteStore(state)
        row2, row3 = (store.read_shard(DATE, "exec-1", 0) or [])[:2]
        arabic = dataclasses.replace(
            row2, nik=row2.nik.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
        )
        items = [arabic, dataclasses.replace(row2, row=99), row3]
        config = load_settings(
            {"FHIR_BASE_URL": sim.fhir, "FHIR_API_KEY": API_KEY, "STATE_PATH": str(state)},
            role="replay",
        )
        logs = io.StringIO()
        telemetry.configure_logging(stream=logs)
        try:
            counts = asyncio.run(replay_directly(config, store, DATE, items))
        finally:
            telemetry.configure_logging(stream=sys.stderr)
        outcomes = {o.row: o.status for o in store.outcomes(DATE)}
        store.close()
    assert counts == {"malformed": 2, "updated": 1}
    assert dict(sim.state.puts_by_patient) == {"patient-002": 1}
    assert outcomes[2] is Status.DEFERRED and outcomes[3] is Status.UPDATED and 99 not in outcomes
    malformed = [
        (line["row"], line["reason"])
        for line in map(json.loads, logs.getvalue().splitlines())
        if line.get("event") == "replay_malformed"
    ]
    assert malformed == [
        (2, "nik_identifier: has digits other than 0-9 (retype it with Latin digits)"),
        (99, "row 99 is not in the manifest of the 2025-09-23 run (exec-1)"),
    ]
    # the applied row ends as every row does: one row_outcome line, the job's fields
    (applied,) = [
        line
        for line in map(json.loads, logs.getvalue().splitlines())
        if line.get("event") == "row_outcome"
    ]
    assert {k: applied[k] for k in ("run_date", "execution", "source", "row", "status")} == {
        "run_date": DATE,
        "execution": "exec-1",
        "source": "operator",
        "row": 3,
        "status": "updated",
    }
    assert applied["nik"] == mask_nik(row3.nik) and applied["reason"]
    assert row2.nik not in logs.getvalue()
