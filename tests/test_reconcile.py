"""`phonesync reconcile`: the registry restored from an older backup, another writer, shards.

The nights run as Cloud Run tasks do (``run_task``), the reconciles as an operator types them
(``main``), against the simulator and Medplum's FHIR server alike. A restore is the server
started again on an older bundle: the simulator anew on the backup, Medplum's repository
replaced by the backed-up resources, their ``meta`` as backed up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.config import ENV_VARS, load_settings
from common.drift import DriftClass
from common.patient import NIK_SYSTEM, mobile_phone_entry
from common.phones import PhoneFormat, normalize_phone
from common.reconcile import classify, repair_budget, settled_until
from common.store import LedgerEntry, SqliteStore
from jobs.cli import main
from jobs.task import run_task
from tests.medplum_server import MedplumServer
from tests.simulator import API_KEY, RunningSim, sample, simulator

DAY1, DAY2 = "2025-09-22", "2025-09-23"
HEADER = "last_updated_date,nik_identifier,name,phone_number"
#: Night 1: every sample patient's number. Night 2 gives four of them a new one.
NIGHT1 = [
    ("3171044203920001", "081234567890"),
    ("3578106207900002", "085678901234"),
    ("3273044812940003", "082345678901"),
    ("1275095011890004", "083456789012"),
    ("7371094806930005", "084567890123"),
    ("5171036509910006", "085678901234"),
    ("3471031204950007", "086789012345"),
    ("3374164401880008", "087890123456"),
    ("1671034310900009", "088901234567"),
    ("6472044008870011", "089012345678"),
]
CHANGED = {"patient-001": "081311110001", "patient-002": "081311110002",
           "patient-003": "081311110003", "patient-004": "081311110004"}  # fmt: skip
PIDS = [f"patient-{n:03d}" for n in range(1, 11)]


def sheet(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("\n".join([HEADER, *(f"{d},{nik},NAME,{phone}" for d, nik, phone in rows)]))
    return path


@pytest.fixture
def sheets(tmp_path: Path) -> tuple[Path, Path]:
    night1 = [("22-09-2025", nik, phone) for nik, phone in NIGHT1]
    night2 = night1 + [
        ("23-09-2025", NIGHT1[int(pid[-3:]) - 1][0], phone) for pid, phone in CHANGED.items()
    ]
    return sheet(tmp_path / "night1.csv", night1), sheet(tmp_path / "night2.csv", night2)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What every process of these tests shares: the state (ledger included) and the key."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    values = {
        "STATE_PATH": str(tmp_path / "state" / "s.sqlite3"),
        "FHIR_API_KEY": API_KEY,
        "FHIR_BACKOFF_SECONDS": "0.01",
        "LOOKBACK_DAYS": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def night(env: dict[str, str], day: str, sheet_csv: Path, fhir: str) -> None:
    settings = load_settings(
        {
            **env,
            "RUN_DATE": day,
            "SHEET_CSV": str(sheet_csv),
            "FHIR_BASE_URL": fhir,
            "CLOUD_RUN_EXECUTION": f"night-{day}",
        }
    )
    assert run_task(settings) == 0


def reconcile(
    capsys: pytest.CaptureFixture[str], fhir: str, sheet_csv: Path, *flags: str
) -> tuple[int, dict[str, Any]]:
    """``phonesync reconcile --format json`` over both nights: its exit code and document."""
    capsys.readouterr()
    code = main(
        [
            "reconcile",
            "--since",
            DAY1,
            "--until",
            DAY2,
            "--sheet",
            str(sheet_csv),
            "--fhir-url",
            fhir,
            "--format",
            "json",
            *flags,
        ]
    )
    out = capsys.readouterr().out
    assert not re.search(r"\d{16}", out), "a full NIK in the output"
    return code, json.loads(out) if out.strip() else {}


def drifted(document: dict[str, Any]) -> dict[str, str]:
    """patient id → class, of the rows that are not in sync."""
    return {row["patient_id"]: row["class"] for row in document["rows"]}


def nonzero(document: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in document["counts"].items() if v}


@dataclass
class Server:
    """A FHIR server as these tests use it, the simulator or Medplum."""

    fhir: str
    patients: Callable[[], list[dict[str, Any]]]
    puts: Callable[[], dict[str, int]]  # successful PUTs by patient id
    headers: dict[str, str]

    def write(self, pid: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Another writer (not phonesync) reads the patient and PUTs it changed."""
        current = httpx.get(f"{self.fhir}/Patient/{pid}", headers=self.headers).json()
        change(current)
        current.pop("meta", None)
        answer = httpx.put(
            f"{self.fhir}/Patient/{pid}",
            content=json.dumps(current),
            headers={**self.headers, "Content-Type": "application/fhir+json"},
        )
        assert answer.status_code == 200, answer.text

    def mobile(self, pid: str) -> str | None:
        (patient,) = [p for p in self.patients() if p["id"] == pid]
        entry = mobile_phone_entry(patient)
        return None if entry is None else str(entry["value"])


def sim_server(sim: RunningSim) -> Server:
    return Server(
        sim.fhir, sim.bundle, lambda: dict(sim.state.puts_by_patient), {"x-api-key": API_KEY}
    )


def medplum_server_of(medplum: MedplumServer) -> Server:
    return Server(
        medplum.fhir,
        medplum.patients,
        lambda: {k.removeprefix("Patient/"): v for k, v in medplum.puts().items()},
        {},
    )


#: Restores a backup: the server started again on it, as a Server.
Restore = Callable[[list[dict[str, Any]]], AbstractContextManager[Server]]


@pytest.fixture(params=["simulator", "medplum"])
def registry(request: pytest.FixtureRequest) -> Iterator[tuple[Server, Restore]]:
    if request.param == "simulator":
        with simulator() as sim:

            def restart(backup: list[dict[str, Any]]) -> AbstractContextManager[Server]:
                return _wrapped(simulator(backup), sim_server)

            yield sim_server(sim), restart
        return
    medplum: MedplumServer = request.getfixturevalue("medplum")

    def restore(backup: list[dict[str, Any]]) -> AbstractContextManager[Server]:
        medplum.restore(backup)
        return _already(medplum_server_of(medplum))

    yield medplum_server_of(medplum), restore


class _wrapped(AbstractContextManager[Server]):
    def __init__(
        self, inner: AbstractContextManager[RunningSim], make: Callable[[RunningSim], Server]
    ):
        self.inner, self.make = inner, make

    def __enter__(self) -> Server:
        return self.make(self.inner.__enter__())

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)


class _already(AbstractContextManager[Server]):
    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> Server:
        return self.server

    def __exit__(self, *exc: object) -> None:
        pass


def test_after_a_restore_reconcile_finds_the_lost_numbers_and_repair_restores_them(
    registry: tuple[Server, Restore],
    sheets: tuple[Path, Path],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, restore = registry
    night1, night2 = sheets
    night(env, DAY1, night1, server.fhir)
    backup = server.patients()  # the registry's backup, taken after night 1
    night(env, DAY2, night2, server.fhir)
    assert {pid: server.mobile(pid) for pid in CHANGED} == CHANGED
    code, found = reconcile(capsys, server.fhir, night2)
    assert (code, found["rows"]) == (0, [])  # before the restore: in sync

    with restore(backup) as restored:  # the registry loses night 2's numbers
        code, found = reconcile(capsys, restored.fhir, night2)
        assert code == 3
        assert drifted(found) == dict.fromkeys(CHANGED, DriftClass.DIFFERENT.value)
        assert nonzero(found) == {"in_sync": 6, "different": 4}
        assert all(r["sheet_date"] == DAY2 and "*" in r["nik"] for r in found["rows"])

        code, repaired = reconcile(capsys, restored.fhir, night2, "--repair")
        assert code == 0  # nothing left
        assert {
            r["patient_id"]: r["repair"].split(":")[0] for r in repaired["rows"]
        } == dict.fromkeys(CHANGED, "repaired")
        assert restored.puts() == dict.fromkeys(CHANGED, 1)  # exactly the lost ones, once
        assert {pid: restored.mobile(pid) for pid in CHANGED} == CHANGED

        code, after = reconcile(capsys, restored.fhir, night2)
        assert (code, after["rows"], nonzero(after)) == (0, [], {"in_sync": 10})


def test_numbers_another_writer_set_after_the_night_are_registry_newer_and_kept(
    registry: tuple[Server, Restore],
    sheets: tuple[Path, Path],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = registry
    night1, _ = sheets
    night(env, DAY1, night1, server.fhir)
    theirs = {"patient-006": "081399990006", "patient-007": "081399990007"}
    for pid, number in theirs.items():
        server.write(pid, lambda p, n=number: mobile_phone_entry(p).update(value=n))  # type: ignore[union-attr,misc]
    server.write("patient-008", lambda p: p.update(gender="female"))  # not the number
    before = server.puts()

    code, found = reconcile(capsys, server.fhir, night1)
    assert code == 3
    assert drifted(found) == dict.fromkeys(theirs, DriftClass.REGISTRY_NEWER.value)
    assert all("another writer" in r["reason"] for r in found["rows"])

    code, kept = reconcile(capsys, server.fhir, night1, "--repair")
    assert code == 3  # drift left: another writer's numbers are not repaired by default
    assert {r["patient_id"]: r["repair"] for r in kept["rows"]} == dict.fromkeys(
        theirs,
        "not repaired: another writer's number (--repair-registry-newer overwrites it)",
    )
    assert server.puts() == before
    assert {pid: server.mobile(pid) for pid in theirs} == theirs

    code, _ = reconcile(capsys, server.fhir, night1, "--repair", "--repair-registry-newer")
    assert code == 0
    sheets_numbers = {"patient-006": NIGHT1[5][1], "patient-007": NIGHT1[6][1]}
    assert {pid: server.mobile(pid) for pid in theirs} == sheets_numbers
    code, after = reconcile(capsys, server.fhir, night1)
    assert (code, after["rows"]) == (0, [])


def test_a_sharded_reconcile_comes_together_in_the_store_and_one_summary_line(
    sheets: tuple[Path, Path],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two Cloud Run tasks of one execution: each its shard, drift exits 0 (the metric and
    its alert report it), the last to record logs the counts over both."""
    night1, _ = sheets
    with simulator() as sim:
        night(env, DAY1, night1, sim.fhir)
    with simulator(sample()) as restored:  # restored from before night 1: every number lost
        task_lines = []
        for index in (0, 1):
            for name, value in {
                "CLOUD_RUN_JOB": "phonesync",
                "CLOUD_RUN_EXECUTION": "phonesync-rec1",
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": "2",
                "SHEET_CSV": str(night1),
                "FHIR_BASE_URL": restored.fhir,
            }.items():
                monkeypatch.setenv(name, value)
            capsys.readouterr()
            assert main(["reconcile", "--since", DAY1, "--until", DAY1]) == 0
            task_lines.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    drift_lines = [
        line for lines in task_lines for line in lines if line["event"] == "reconcile_drift"
    ]
    assert sorted(line["patient_id"] for line in drift_lines) == PIDS
    assert {line["class"] for line in drift_lines} == {"missing"}
    assert all(len(lines) > 2 for lines in task_lines)  # each task had a shard
    finished = [
        [line for line in lines if line["event"] == "reconcile_finished"] for lines in task_lines
    ]
    assert [len(f) for f in finished] == [0, 1]
    assert {k: v for k, v in finished[1][0]["counts"].items() if v} == {"missing": 10}

    store = SqliteStore(env["STATE_PATH"])
    try:
        run = store.get_reconcile("phonesync-rec1")
        assert run is not None and run.finished_at is not None and run.tasks_finished == 2
        assert [r.patient_id for r in store.drift_rows("phonesync-rec1")] == PIDS
    finally:
        store.close()
    for name in (
        "CLOUD_RUN_JOB",
        "CLOUD_RUN_EXECUTION",
        "CLOUD_RUN_TASK_INDEX",
        "CLOUD_RUN_TASK_COUNT",
    ):
        monkeypatch.delenv(name)
    assert main(["drift", "--format", "json"]) == 0
    captured = capsys.readouterr()
    listed = json.loads(captured.out)
    assert [(r["patient_id"], r["class"]) for r in listed] == [(pid, "missing") for pid in PIDS]
    assert "reconcile phonesync-rec1 of 2025-09-22..2025-09-22 (read-only, finished" in captured.err


# -- classification ---------------------------------------------------------------------------

PHONE = normalize_phone("081234567890")
OURS = LedgerEntry("k", "h", DAY1, 2, "t", "r", "v2", "2025-09-22T16:00:01.000Z")


def patient(
    mobile: str | None, version: str = "v2", updated: str = "2025-09-22T16:00:01.000Z"
) -> dict[str, Any]:
    telecom = [{"system": "phone", "use": "home", "value": "0215550100"}]
    if mobile is not None:
        telecom.append({"system": "phone", "use": "mobile", "value": mobile})
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": version, "lastUpdated": updated},
        "identifier": [{"system": NIK_SYSTEM, "value": "3171044203920001"}],
        "telecom": telecom,
    }


@pytest.mark.parametrize(
    ("matches", "entry", "expected"),
    [
        ([patient("081234567890")], OURS, DriftClass.IN_SYNC),
        ([patient("+6281234567890", "v9", "2026-01-01T00:00:00Z")], OURS, DriftClass.FORMAT_ONLY),
        ([patient("0812-3456-7890")], None, DriftClass.FORMAT_ONLY),
        ([patient(None)], OURS, DriftClass.MISSING),
        ([patient("081299998888")], OURS, DriftClass.DIFFERENT),
        ([patient("081299998888")], None, DriftClass.DIFFERENT),  # never written by phonesync
        # a later version, stored after phonesync's write: another writer
        ([patient("081299998888", "v3", "2025-09-23T01:00:00Z")], OURS, DriftClass.REGISTRY_NEWER),
        ([patient(None, "v3", "2025-09-22T16:00:01.000Z")], OURS, DriftClass.REGISTRY_NEWER),
        # the same instant in another offset is not earlier
        (
            [patient("081299998888", "v3", "2025-09-22T23:00:01+07:00")],
            OURS,
            DriftClass.REGISTRY_NEWER,
        ),
        # an earlier version, stored before phonesync's write: a restored backup lost it
        ([patient("081299998888", "v1", "2025-08-22T03:15:30Z")], OURS, DriftClass.DIFFERENT),
        ([patient(None, "v1", "2025-08-22T10:15:30.123456+07:00")], OURS, DriftClass.MISSING),
        # an entry from before versions were kept says nothing about other writers
        (
            [patient("081299998888", "v3", "2026-01-01T00:00:00Z")],
            LedgerEntry("k", "h", DAY1, 2, "t"),
            DriftClass.DIFFERENT,
        ),
        ([], OURS, DriftClass.NOT_FOUND),
        ([patient("081234567890"), patient("081234567890")], OURS, DriftClass.AMBIGUOUS),
    ],
)
def test_each_nik_falls_in_one_class(
    matches: list[dict[str, Any]], entry: LedgerEntry | None, expected: DriftClass
) -> None:
    assert classify(matches, PHONE, PhoneFormat.NATIONAL, entry)[0] is expected


def test_the_spelling_phonesync_writes_decides_in_sync_from_format_only() -> None:
    held = [patient("+6281234567890")]
    assert classify(held, PHONE, PhoneFormat.E164, OURS)[0] is DriftClass.IN_SYNC
    assert classify(held, PHONE, PhoneFormat.NATIONAL, OURS)[0] is DriftClass.FORMAT_ONLY


def test_max_repairs_is_split_over_the_tasks_without_losing_one() -> None:
    assert [repair_budget(10, i, 4) for i in range(4)] == [3, 3, 2, 2]
    assert sum(repair_budget(7, i, 3) for i in range(3)) == 7


def test_the_default_window_ends_where_every_night_that_takes_its_rows_has_run() -> None:
    from datetime import date

    assert settled_until(1, date(2025, 9, 28)) == date(2025, 9, 26)
    assert settled_until(0, date(2025, 9, 28)) == date(2025, 9, 27)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--since", DAY2, "--until", DAY1], "--since 2025-09-23 is after --until 2025-09-22"),
        (["--since", DAY1, "--days", "7"], "give --since or --days, not both"),
        (
            ["--since", DAY1, "--repair-registry-newer"],
            "--repair-registry-newer only widens --repair",
        ),
        (["--since", DAY1, "--max-repairs", "-1"], "--max-repairs must be 0 or more"),
    ],
)
def test_usage_errors_are_one_line(
    flags: list[str], message: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["reconcile", *flags, "--sheet", "s.csv", "--fhir-url", "http://127.0.0.1:9/fhir"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
