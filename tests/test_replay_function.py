"""The replay function: real CloudEvents (binary and structured) through functions-framework,
with Firestore on the emulator and the FHIR simulator."""

import base64
import dataclasses
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from common import telemetry
from common.config import load_settings
from common.failures import FailureMessage, topic_path
from common.outcomes import RowOutcome, Status
from common.planning import shard_of
from common.privacy import keyed_hash, mask_nik
from common.store import LedgerEntry, RunStatus, WorkItem
from common.store._firestore import FirestoreStore
from jobs.task import run_task
from tests.simulator import API_KEY, SAMPLE_SHEET, RunningSim, run_cli, simulator
from tests.store_contract import write_manifest

ROOT = Path(__file__).resolve().parent.parent
DATE = "2025-09-23"
LEDGER_KEY = "test-ledger-key"
MESSAGE = FailureMessage(
    run_date=DATE,
    execution="exec-1",
    row=2,
    nik="3171044203920001",
    phone="+6281234567890",
    reason="HTTP 503 after 6 attempt(s)",
    attempts=6,
    sheet_date=DATE,
)


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with simulator() as running:
        yield running


@pytest.fixture
def function(gcp_project: str, sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {
        "STATE_BACKEND": "firestore",
        "GOOGLE_CLOUD_PROJECT": gcp_project,
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "LEDGER_KEY": LEDGER_KEY,
        "FHIR_BACKOFF_SECONDS": "0.01",
    }.items():
        monkeypatch.setenv(key, value)
    app = create_app(
        target="replay", source=str(ROOT / "functions/replay/main.py"), signature_type="cloudevent"
    )
    return app.test_client()


@pytest.fixture
def store(gcp_project: str) -> Iterator[FirestoreStore]:
    s = FirestoreStore(gcp_project)
    # a finished run whose row 2 was deferred
    s.acquire_run(DATE, "exec-1", 1, 60, 1_000.0)
    write_manifest(s, DATE, "exec-1", {0: [WorkItem(2, DATE, MESSAGE.nik, MESSAGE.phone)]}, [])
    s.record_outcomes(
        DATE, [RowOutcome(2, Status.DEFERRED, MESSAGE.reason, nik_masked="3171********0001")]
    )
    s.claim_shard(DATE, "exec-1", 0, 0, 60, 1_001.0)
    s.finish_shard(DATE, "exec-1", 0, 0, 1_001.0)
    yield s
    s.close()


def envelope(data: bytes) -> dict[str, Any]:
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": "m-1",
            "attributes": {"row": "2"},
        },
        "subscription": "projects/p/subscriptions/replay",
    }


def deliver(client: Any, data: bytes, mode: str = "binary") -> int:
    source = "//pubsub.googleapis.com/projects/p/topics/phonesync-failures"
    kind = "google.cloud.pubsub.topic.v1.messagePublished"
    if mode == "push":  # what terraform's push subscription sends (no CloudEvent headers)
        return int(
            client.post("/projects/p/topics/phonesync-failures", json=envelope(data)).status_code
        )
    if mode == "binary":
        headers = {"ce-id": "e-1", "ce-source": source, "ce-type": kind, "ce-specversion": "1.0"}
        response = client.post("/", json=envelope(data), headers=headers)
    else:
        body = {
            "specversion": "1.0",
            "id": "e-1",
            "source": source,
            "type": kind,
            "datacontenttype": "application/json",
            "data": envelope(data),
        }
        response = client.post(
            "/", data=json.dumps(body), headers={"Content-Type": "application/cloudevents+json"}
        )
    return int(response.status_code)


@pytest.mark.parametrize("mode", ["binary", "structured", "push"])
def test_a_deferred_row_is_applied_and_the_run_succeeds(
    function: Any, store: FirestoreStore, sim: RunningSim, mode: str
) -> None:
    assert store.get_run(DATE).status is RunStatus.PARTIAL
    assert deliver(function, MESSAGE.to_json(), mode) == 200
    assert dict(sim.state.puts_by_patient) == {"patient-001": 1}
    assert sim.state.patient("patient-001")["telecom"] == [
        {"system": "phone", "use": "mobile", "value": "081234567890"}
    ]
    (outcome,) = store.outcomes(DATE)
    assert outcome.status is Status.UPDATED
    run = store.get_run(DATE)
    assert (run.status, run.counts) == (RunStatus.SUCCEEDED, {"updated": 1})
    assert store.ledger_get([keyed_hash(MESSAGE.nik, LEDGER_KEY.encode())])  # remembered
    # a duplicate delivery (Pub/Sub is at-least-once) writes nothing
    assert deliver(function, MESSAGE.to_json(), mode) == 200
    assert dict(sim.state.puts_by_patient) == {"patient-001": 1}


@pytest.mark.parametrize("mode", ["binary", "push"])
def test_a_transient_failure_raises_so_pubsub_redelivers(
    function: Any, store: FirestoreStore, sim: RunningSim, mode: str
) -> None:
    sim.state.set_down(True)
    assert deliver(function, MESSAGE.to_json(), mode) == 500
    assert store.outcomes(DATE)[0].status is Status.DEFERRED
    assert store.get_run(DATE).counts == {"deferred": 1}


def test_a_permanent_failure_is_recorded_and_acknowledged(
    function: Any, store: FirestoreStore, sim: RunningSim
) -> None:
    sim.state.on_before_put(lambda pid, state: state.patients.pop(pid))  # deleted under us: PUT 404
    assert deliver(function, MESSAGE.to_json()) == 200
    (outcome,) = store.outcomes(DATE)
    assert outcome.status is Status.ERROR and "404" in outcome.reason
    assert store.get_run(DATE).status is RunStatus.PARTIAL


def test_a_stale_replay_never_overwrites_a_newer_number(
    function: Any, store: FirestoreStore, sim: RunningSim
) -> None:
    key = LEDGER_KEY.encode()
    newer = LedgerEntry(  # applied by a later read of the sheet, from an earlier row and date
        keyed_hash(MESSAGE.nik, key),
        keyed_hash("+6289999999999", key),
        "2025-09-22",
        1,
        "t",
        "2025-09-24T16:00:00.000000+00:00",
    )
    store.ledger_put([newer])
    assert deliver(function, MESSAGE.to_json()) == 200
    assert sim.state.stats() == {
        "requests": {},
        "entries": {},
        "puts_by_patient": {},
    }  # no FHIR call at all
    assert store.outcomes(DATE)[0].status is Status.STALE


@pytest.mark.parametrize("data", [b"not json", json.dumps({"row": 2}).encode(), b""])
def test_a_malformed_message_is_acknowledged_not_retried(
    function: Any, store: FirestoreStore, sim: RunningSim, data: bytes
) -> None:
    assert deliver(function, data) == 200
    assert store.outcomes(DATE)[0].status is Status.DEFERRED  # untouched
    assert sim.state.stats()["requests"] == {}


def test_outage_then_recovery_end_to_end(
    gcp_project: str, sim: RunningSim, function: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run during an outage → rows deferred and published → server recovers → messages pulled
    from the emulator and fed to the function → every patient updated once, run succeeded."""
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = topic_path(gcp_project, "phonesync-failures")
    subscription = subscriber.subscription_path(gcp_project, "replay")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    env = {
        "STATE_BACKEND": "firestore",
        "GOOGLE_CLOUD_PROJECT": gcp_project,
        "FAILURE_TOPIC": "phonesync-failures",
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_API_KEY": API_KEY,
        "LEDGER_KEY": LEDGER_KEY,
        "SHEET_CSV": str(SAMPLE_SHEET),
        "RUN_DATE": DATE,
        "CLOUD_RUN_EXECUTION": "exec-outage",
        "FHIR_DEADLINE_SECONDS": "0.5",
        "FHIR_MAX_ATTEMPTS": "3",
        "FHIR_BACKOFF_SECONDS": "0.01",
    }
    sim.state.set_down(True)
    assert run_task(load_settings(env)) == 0
    sim.state.set_down(False)
    pulled = subscriber.pull(
        subscription=subscription, max_messages=50, timeout=10
    ).received_messages
    assert len(pulled) == 10
    for received in pulled:
        assert deliver(function, received.message.data) == 200
    assert dict(sim.state.puts_by_patient) == {f"patient-{i:03d}": 1 for i in range(1, 11)}
    status = run_cli("status", "--date", DATE, "--state", "firestore", "--project", gcp_project)
    assert status.returncode == 0, status.stderr
    assert "run 2025-09-23: succeeded" in status.stdout and "updated          10" in status.stdout


# -- a message must be a row its run planned: the sheet's rules, then the run's manifest --


def in_digits(nik: str, zero: str) -> str:
    """``nik`` written with the digits of another script (``zero``: that script's 0)."""
    return "".join(chr(ord(zero) + int(d)) for d in nik)


ARABIC_INDIC_NIK = in_digits(MESSAGE.nik, "\u0660")
OTHER_NIK = "3578106207900002"  # patient-002's: a real patient, not row 2's


@pytest.fixture
def logs(function: Any) -> Iterator[io.StringIO]:
    """The function's JSON log lines (after it configured logging on import)."""
    stream = io.StringIO()
    telemetry.configure_logging(stream=stream)
    yield stream
    telemetry.configure_logging(stream=sys.stderr)


def events(logs: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == name]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # the sheet's rules, with the sheet parser's reasons
        ({"nik": ARABIC_INDIC_NIK}, "nik_identifier: has digits other than 0-9"),
        ({"nik": "3171"}, "nik_identifier: has 4 digits, expected 16"),
        ({"phone": "+62215551234"}, "phone_number: is not a mobile number"),
        ({"phone": "+628001234567"}, "phone_number: is a toll-free, premium"),
        ({"sheet_date": "20250923"}, "last_updated_date: is not a date in DD-MM-YYYY form"),
        ({"sheet_date": "2025-02-30"}, "last_updated_date: is not a real calendar date"),
        # the run's manifest
        ({"row": 99}, "row 99 is not in the manifest of the 2025-09-23 run (exec-1)"),
        ({"nik": OTHER_NIK}, "nik_identifier does not match row 2 of the run"),
        ({"phone": "+6281299998888"}, "phone_number does not match row 2 of the run"),
        ({"sheet_date": "2025-09-22"}, "last_updated_date does not match row 2 of the run"),
        ({"run_date": "2025-09-30"}, "no run of 2025-09-30 is recorded"),
        ({"execution": "exec-0"}, "the run of 2025-09-23 is execution exec-1's, not exec-0's"),
    ],
)
def test_a_message_that_is_not_a_planned_row_is_logged_and_acknowledged(
    function: Any,
    store: FirestoreStore,
    sim: RunningSim,
    logs: io.StringIO,
    change: dict[str, Any],
    reason: str,
) -> None:
    """Measured before: an Arabic-Indic NIK overwrote row 2 with not_found; row 99 was added
    to the date's report and counts; another patient's NIK got row 2's number. Now: logged,
    acknowledged (2xx: Pub/Sub must not redeliver), no FHIR call, nothing recorded or counted."""
    message = dataclasses.replace(MESSAGE, **change)
    assert deliver(function, message.to_json()) == 200
    assert sim.state.stats()["requests"] == {}
    assert store.outcomes(DATE) == [
        RowOutcome(2, Status.DEFERRED, MESSAGE.reason, nik_masked="3171********0001")
    ]
    run = store.get_run(DATE)
    assert (run.status, run.counts) == (RunStatus.PARTIAL, {"deferred": 1})
    assert store.get_run("2025-09-30") is None
    assert store.ledger_get([keyed_hash(MESSAGE.nik, LEDGER_KEY.encode())]) == {}
    (logged,) = events(logs, "replay_malformed")
    assert reason in logged["reason"] and logged["severity"] == "ERROR"
    assert (logged["row"], logged["nik"]) == (message.row, mask_nik(message.nik))
    for pii in (MESSAGE.nik, ARABIC_INDIC_NIK, OTHER_NIK, message.phone):
        assert pii not in logs.getvalue()
    assert not events(logs, "row_outcome")


def test_a_message_for_a_run_without_a_manifest_is_malformed(
    function: Any, store: FirestoreStore, sim: RunningSim, logs: io.StringIO
) -> None:
    store.acquire_run("2025-09-24", "exec-2", 1, 60, 2_000.0)  # task 0 has not planned yet
    message = dataclasses.replace(MESSAGE, run_date="2025-09-24", execution="exec-2")
    assert deliver(function, message.to_json()) == 200
    assert sim.state.stats()["requests"] == {}
    assert store.outcomes("2025-09-24") == [] and store.get_run("2025-09-24").counts == {}
    (logged,) = events(logs, "replay_malformed")
    assert "the 2025-09-24 run (exec-2) has no manifest" in logged["reason"]


def test_spellings_the_sheet_accepts_are_accepted(
    function: Any, store: FirestoreStore, sim: RunningSim
) -> None:
    """Full-width NIK digits, a national number, a DD-MM-YYYY date: the sheet takes them, so
    does a replay, in the manifest's form (the ledger keys the ASCII NIK)."""
    message = dataclasses.replace(
        MESSAGE,
        nik=in_digits(MESSAGE.nik, "\uff10"),  # full-width
        phone="0812-3456-7890",
        sheet_date="23-09-2025",
    )
    assert deliver(function, message.to_json()) == 200
    assert dict(sim.state.puts_by_patient) == {"patient-001": 1}
    assert [o.status for o in store.outcomes(DATE)] == [Status.UPDATED]
    assert store.ledger_get([keyed_hash(MESSAGE.nik, LEDGER_KEY.encode())])


def test_a_replay_of_a_run_taken_over_by_a_rerun_is_stale(
    function: Any, store: FirestoreStore, sim: RunningSim
) -> None:
    """A rerun cleared the old run's manifest; its read re-decided the date: stale, no FHIR
    call, and the rerun's report is untouched."""
    store.acquire_run(DATE, "exec-2", 1, 60, 5_000.0)
    store.note_read("2025-09-24T16:00:00.000000+00:00", [DATE])
    write_manifest(store, DATE, "exec-2", {0: []}, [])
    assert deliver(function, MESSAGE.to_json()) == 200
    assert sim.state.stats()["requests"] == {}
    assert store.outcomes(DATE) == []


def test_a_store_that_cannot_be_read_is_transient_not_malformed(
    function: Any,
    store: FirestoreStore,
    sim: RunningSim,
    logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def down(*args: object) -> None:
        raise gexc.ServiceUnavailable("firestore is down")

    monkeypatch.setattr(FirestoreStore, "read_shard", down)
    assert deliver(function, MESSAGE.to_json()) == 500  # Pub/Sub redelivers it later
    assert not events(logs, "replay_malformed")
    assert sim.state.stats()["requests"] == {}
    monkeypatch.undo()
    assert store.outcomes(DATE)[0].status is Status.DEFERRED


def test_a_many_task_runs_rows_are_looked_up_in_their_niks_shard(
    function: Any, store: FirestoreStore, sim: RunningSim, logs: io.StringIO
) -> None:
    """Rows 2 and 3 are in different shards of a 4-task run: row 3's NIK on row 2 is refused
    as another patient's, and each message with its own NIK applies."""
    day, tasks = "2025-09-24", 4
    rows = {2: (MESSAGE.nik, MESSAGE.phone), 3: (OTHER_NIK, "+6285678901234")}
    assert len({shard_of(nik, tasks) for nik, _ in rows.values()}) == 2
    shards: dict[int, list[WorkItem]] = {i: [] for i in range(tasks)}
    for row, (nik, phone) in rows.items():
        shards[shard_of(nik, tasks)].append(WorkItem(row, day, nik, phone))
    store.acquire_run(day, "exec-4", tasks, 60, 3_000.0)
    write_manifest(store, day, "exec-4", shards, [])
    store.record_outcomes(day, [RowOutcome(row, Status.DEFERRED) for row in rows])
    base = dataclasses.replace(MESSAGE, run_date=day, execution="exec-4", sheet_date=day)
    assert deliver(function, dataclasses.replace(base, nik=OTHER_NIK).to_json()) == 200
    (logged,) = events(logs, "replay_malformed")
    assert logged["reason"] == "nik_identifier does not match row 2 of the run"
    assert sim.state.stats()["requests"] == {}
    for row, (nik, phone) in rows.items():
        message = dataclasses.replace(base, row=row, nik=nik, phone=phone)
        assert deliver(function, message.to_json()) == 200
    assert dict(sim.state.puts_by_patient) == {"patient-001": 1, "patient-002": 1}
    assert [o.status for o in store.outcomes(day)] == [Status.UPDATED, Status.UPDATED]


def test_a_replayed_number_in_an_unassigned_range_keeps_its_warning(
    function: Any, store: FirestoreStore, sim: RunningSim
) -> None:
    """Messages do not say whether the range is assigned; the manifest does."""
    day, nik, phone = "2025-09-24", "7371094806930005", "+6284567890123"  # patient-005, 0845…
    store.acquire_run(day, "exec-5", 1, 60, 3_000.0)
    write_manifest(store, day, "exec-5", {0: [WorkItem(6, day, nik, phone, assigned=False)]}, [])
    message = dataclasses.replace(
        MESSAGE, run_date=day, execution="exec-5", row=6, nik=nik, phone=phone, sheet_date=day
    )
    assert deliver(function, message.to_json()) == 200
    (outcome,) = store.outcomes(day)
    assert outcome.status is Status.UPDATED and "not assigned" in outcome.warning
