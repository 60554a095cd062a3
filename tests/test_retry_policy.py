"""One retry policy (common.retry) for every remote call phonesync makes.

Each retry loop — FHIR requests and batch entries, the OAuth token fetch, Sheets reads and
writes, Firestore bulk writes and the closing of a run — waits the common full-jitter backoff:
the waits an injected ``sleep`` records are the draws of an injected ``rng`` from
``uniform(0, min(cap, base * 2**retry))``, computed here independently of the code under test.
Faults come from the simulator (HTTP) and from Firestore's own transport (gRPC codes).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud.firestore_v1.types import BatchWriteResponse, WriteResult
from google.rpc import code_pb2, status_pb2

from common.fhir import BatchingRegistry, FhirClient, FhirSettings, OAuth2ClientCredentials
from common.outcomes import RowOutcome, Status
from common.retry import (
    LONGEST_RETRY_AFTER,
    RETRYABLE_GRPC_CODES,
    retryable_grpc,
    retryable_status,
)
from common.sheets_api import read_sheet, replace_tab
from common.store import RunStatus
from common.store._firestore import BULK_ATTEMPTS, FirestoreStore, StoreWriteError
from tests.emulators import EmulatorProject
from tests.simulator import API_KEY, RunningSim, simulator
from tests.store_contract import DATE, LEASE, T0, finish, item, write_manifest

pytestmark = pytest.mark.timeout(120)

SHEET = "last_updated_date,nik_identifier,name,phone_number\n23-09-2025,3171044203920001,A,0812\n"
SEED = 20250923


def full_jitter(base: float, cap: float, retries: int, seed: int = SEED) -> list[float]:
    """The waits before retries 0 … ``retries - 1`` under full jitter, drawn from ``seed``."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, min(cap, base * 2**n)) for n in range(retries)]


class Waits:
    """An injected ``sleep``: records each wait and returns at once (sync and async flavours)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)

    async def pause(self, seconds: float) -> None:
        self.seconds.append(seconds)


def fhir_settings(sim: RunningSim, **overrides: Any) -> FhirSettings:
    options: dict[str, Any] = {
        "base_url": sim.fhir,
        "api_key": API_KEY,
        "rate_limit": 0,
        "backoff_seconds": 0.3,
        "backoff_cap_seconds": 1.0,
    }
    return FhirSettings(**{**options, **overrides})


# --- what is worth another attempt ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (None, True),  # no answer: a timeout, a refused connection
        (408, True),
        (429, True),
        (500, True),
        (501, True),
        (503, True),
        (599, True),
        (0, False),  # a batch entry without a readable status
        (200, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (412, False),
        (422, False),
    ],
)
def test_which_http_answers_are_retried(status: int | None, retryable: bool) -> None:
    assert retryable_status(status) is retryable


def test_which_grpc_codes_are_retried() -> None:
    names = {code_pb2.Code.Name(code) for code in range(17) if retryable_grpc(code)}
    assert names == {
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "INTERNAL",
        "UNAVAILABLE",
    }
    assert {getattr(code_pb2, name) for name in names} == RETRYABLE_GRPC_CODES


# --- FHIR -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True], ids=["request", "batch-entry"])
def test_fhir_retries_wait_the_common_backoff(batch: bool) -> None:
    waits = Waits()
    with simulator() as sim:
        fail = sim.state.fail_next_entries if batch else sim.state.fail_next
        fail(3, 503)  # the request, or its entry in a Bundle (the Bundle itself succeeds)

        async def go() -> dict[str, Any]:
            client = FhirClient(fhir_settings(sim), rng=random.Random(SEED), sleep=waits.pause)
            async with client:
                return await BatchingRegistry(client, 10 if batch else 0).read("patient-001")

        assert asyncio.run(go())["id"] == "patient-001"
        assert (sim.state.entries["GET 503"], sim.state.requests["GET 503"]) == (
            (3, 0) if batch else (0, 3)
        )
    assert waits.seconds == full_jitter(0.3, 1.0, 3)


def test_the_token_fetch_is_jittered_with_the_common_backoff() -> None:
    waits = Waits()
    with simulator(api_key=None, oauth_client=("client", "secret")) as sim:
        sim.state.fail_next(2, 503)  # the token endpoint answers 503 twice, then a token
        auth = OAuth2ClientCredentials(
            f"{sim.url}/oauth2/token",
            "client",
            "secret",
            rng=random.Random(SEED),
            sleep=waits.pause,
        )

        async def go() -> dict[str, Any]:
            async with FhirClient(fhir_settings(sim, api_key=None), auth=auth) as client:
                return await client.read("patient-001")

        assert asyncio.run(go())["id"] == "patient-001"
        assert sim.state.requests["POST token 503"] == 2
    # The common jitter, never below SATUSEHAT's minute after a failed token request.
    assert waits.seconds == [max(60.0, w) for w in full_jitter(0.5, 10.0, 2)]


# --- Sheets -----------------------------------------------------------------------------------


def test_sheets_read_retries_wait_the_common_backoff() -> None:
    waits = Waits()
    with simulator(sheet_csv=SHEET) as sim:
        sim.state.fail_next_sheet(3, 503)
        rows = read_sheet(
            "s", "A:D", api_url=sim.url, token=lambda: "t", sleep=waits, rng=random.Random(SEED)
        )
        assert len(list(rows)) == 1
    assert waits.seconds == full_jitter(0.5, 30.0, 3)


def test_sheets_write_retries_wait_the_same_backoff() -> None:
    waits = Waits()
    with simulator() as sim:
        sim.state.fail_next_sheet(2, 503)
        replace_tab(
            "officers",
            "phonesync",
            [["x"]],
            api_url=sim.url,
            token=lambda: "t",
            sleep=waits,
            rng=random.Random(SEED),
        )
        assert sim.state.sheet_tabs.values("officers", "phonesync") == [["x"]]
    assert waits.seconds == full_jitter(0.5, 30.0, 2)


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "least", "most"),
    [
        (lambda: "7", 7.0, 7.0),  # delta-seconds: the floor of a backoff of at most 0.5 s
        (lambda: http_date(30), 28.0, 30.0),  # an HTTP date (whole seconds) 30 s from now
        (lambda: "3600", LONGEST_RETRY_AFTER, LONGEST_RETRY_AFTER),  # an hour: the API is down
    ],
    ids=["seconds", "http-date", "too-long"],
)
def test_sheets_honours_retry_after_as_seconds_or_an_http_date(
    retry_after: Callable[[], str], least: float, most: float
) -> None:
    waits = Waits()
    with simulator(sheet_csv=SHEET) as sim:
        sim.state.fail_next_sheet(1, 429, retry_after=retry_after())
        rows = read_sheet("s", "A:D", api_url=sim.url, token=lambda: "t", sleep=waits)
        assert len(list(rows)) == 1
    (waited,) = waits.seconds
    assert least <= waited <= most


# --- Firestore --------------------------------------------------------------------------------


@pytest.fixture
def store(firestore_emulator: EmulatorProject) -> Iterator[tuple[FirestoreStore, Waits]]:
    waits = Waits()
    backend = FirestoreStore(firestore_emulator.project, rng=random.Random(SEED), sleep=waits)
    yield backend, waits
    backend.close()


def refuse_bulk_writes(
    monkeypatch: pytest.MonkeyPatch, store: FirestoreStore, times: int, code: int
) -> None:
    """The next ``times`` BatchWrite RPCs answer ``code`` for every write, writing nothing."""
    api = store.db._firestore_api
    real = api.batch_write
    left = [times]

    def batch_write(*, request: dict[str, Any], **options: Any) -> Any:
        if left[0] <= 0:
            return real(request=request, **options)
        left[0] -= 1
        count = len(request["writes"])
        refused = status_pb2.Status(code=code, message=code_pb2.Code.Name(code))
        return BatchWriteResponse(write_results=[WriteResult()] * count, status=[refused] * count)

    monkeypatch.setattr(api, "batch_write", batch_write)


def test_firestore_bulk_writes_are_retried_after_the_common_backoff(
    store: tuple[FirestoreStore, Waits], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, waits = store
    refuse_bulk_writes(monkeypatch, backend, 2, code_pb2.UNAVAILABLE)
    backend.record_outcomes(DATE, [RowOutcome(n, Status.UPDATED, "ok") for n in (2, 3, 4)])
    assert [o.row for o in backend.outcomes(DATE)] == [2, 3, 4]
    assert waits.seconds == full_jitter(1.0, 10.0, 2)


def test_firestore_bulk_writes_give_up_after_their_attempts(
    store: tuple[FirestoreStore, Waits], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, waits = store
    refuse_bulk_writes(monkeypatch, backend, BULK_ATTEMPTS, code_pb2.ABORTED)
    with pytest.raises(StoreWriteError, match=r"2 of 2 Firestore writes failed .*code 10: ABORTED"):
        backend.record_outcomes(DATE, [RowOutcome(n, Status.UPDATED, "ok") for n in (2, 3)])
    assert waits.seconds == full_jitter(1.0, 10.0, BULK_ATTEMPTS - 1)


def test_a_firestore_write_refused_for_good_is_not_retried(
    store: tuple[FirestoreStore, Waits], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, waits = store
    refuse_bulk_writes(monkeypatch, backend, 1, code_pb2.PERMISSION_DENIED)
    with pytest.raises(StoreWriteError, match=r"1 of 1 Firestore writes failed .*code 7"):
        backend.record_outcomes(DATE, [RowOutcome(2, Status.UPDATED, "ok")])
    assert waits.seconds == []


def test_a_run_that_moved_while_it_closed_is_counted_again_after_the_common_backoff(
    store: tuple[FirestoreStore, Waits], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, waits = store
    backend.acquire_run(DATE, "exec-a", 1, LEASE, T0)
    write_manifest(backend, DATE, "exec-a", {0: [item(2)]}, [])
    backend.record_outcomes(DATE, [RowOutcome(2, Status.DEFERRED, "503")])
    count = backend.outcomes
    replays = [RowOutcome(2, Status.DEFERRED, "503 again"), RowOutcome(2, Status.UPDATED, "ok")]

    def count_while_a_replay_lands(run_date: str) -> list[RowOutcome]:
        counted = count(run_date)
        if replays:  # the replay function moves the row between the count and the close
            backend.record_replay(DATE, "exec-a", [replays.pop(0)], T0 + 1)
        return counted

    monkeypatch.setattr(backend, "outcomes", count_while_a_replay_lands)
    final = finish(backend, 0, T0 + 2)
    assert final is not None and final.status == RunStatus.SUCCEEDED
    assert waits.seconds == full_jitter(0.1, 1.0, 2)  # counted three times
