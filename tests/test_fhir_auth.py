"""FHIR_AUTH: oauth2 (client credentials) and google (ADC) against the simulator's token endpoint
and bearer mode — caching, expiry, one refresh after a 401, refusals, and no secret or token in
any log line, outcome or message."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.config import ENV_VARS, load_settings
from common.errors import ConfigError
from common.fhir import (
    FhirAuthError,
    FhirClient,
    FhirSettings,
    FhirTransientError,
    OAuth2ClientCredentials,
)
from common.fhir._auth import AFTER_FAILED_TOKEN_REQUEST
from common.store import RunStatus, SqliteStore
from common.telemetry import LOGGER_NAME, configure_logging
from jobs.task import run_task
from tests.simulator import SAMPLE_SHEET, RunningSim, run_cli, simulator

CLIENT_ID = "phonesync-client"
CLIENT_SECRET = "s3cr3t-client-value-8f2e"
NIK = "3171044203920001"
DATE = "2025-09-23"

pytestmark = pytest.mark.timeout(60)


def bearer_sim(**options: Any) -> Any:
    return simulator(api_key=None, oauth_client=(CLIENT_ID, CLIENT_SECRET), **options)


def oauth2_settings(sim: RunningSim, secret: str = CLIENT_SECRET, **extra: Any) -> FhirSettings:
    return FhirSettings(
        base_url=sim.fhir,
        auth="oauth2",
        token_url=f"{sim.url}/oauth2/token",
        client_id=CLIENT_ID,
        client_secret=secret,
        backoff_seconds=0.01,
        **extra,
    )


def token_requests(sim: RunningSim) -> int:
    return sim.state.requests["POST token 200"]


def test_oauth2_fetches_one_token_for_many_concurrent_requests() -> None:
    with bearer_sim() as sim:

        async def go() -> list[int]:
            async with FhirClient(oauth2_settings(sim)) as client:
                found = await asyncio.gather(*(client.search_by_nik(NIK) for _ in range(30)))
                return [len(f) for f in found]

        assert asyncio.run(go()) == [1] * 30
        assert token_requests(sim) == 1  # no stampede on the token endpoint
        assert sim.state.requests["GET 401"] == 0


def test_oauth2_token_is_cached_until_shortly_before_it_expires() -> None:
    now = [1000.0]
    with bearer_sim(token_ttl=3600) as sim:
        settings = oauth2_settings(sim)

        async def go() -> list[int]:
            auth = OAuth2ClientCredentials(
                str(settings.token_url), CLIENT_ID, CLIENT_SECRET, clock=lambda: now[0]
            )
            seen = []
            async with FhirClient(settings, auth=auth) as client:
                for t in (1000.0, 3000.0, 4539.0, 4541.0, 4600.0):
                    now[0] = t
                    await client.read("patient-001")
                    seen.append(token_requests(sim))
            return seen

        # Fetched at 1000; 3600 s valid; replaced 60 s before the end (at 4540).
        assert asyncio.run(go()) == [1, 1, 1, 2, 2]


def test_an_expired_token_is_replaced_before_the_server_refuses_it() -> None:
    with bearer_sim(token_ttl=1) as sim:

        async def go() -> None:
            async with FhirClient(oauth2_settings(sim)) as client:
                await client.read("patient-001")
                await asyncio.sleep(1.2)  # the token has expired on the server
                await client.read("patient-001")

        asyncio.run(go())
        assert token_requests(sim) == 2
        assert sim.state.requests["GET 401"] == 0


def test_a_revoked_token_is_refreshed_once_and_the_request_resent() -> None:
    with bearer_sim() as sim:

        async def go() -> dict[str, Any]:
            async with FhirClient(oauth2_settings(sim)) as client:
                await client.read("patient-001")
                sim.state.revoke_tokens()
                return await client.read("patient-002")

        assert asyncio.run(go())["id"] == "patient-002"
        assert sim.state.requests["GET 401"] == 1
        assert token_requests(sim) == 2


def test_a_server_that_keeps_refusing_fresh_tokens_is_asked_once_more_only() -> None:
    with bearer_sim(token_ttl=0) as sim:  # every token is dead on arrival

        async def go() -> None:
            async with FhirClient(oauth2_settings(sim)) as client:
                await client.read("patient-001")

        with pytest.raises(FhirAuthError) as caught:
            asyncio.run(go())
        assert caught.value.status == 401
        assert sim.state.requests["GET 401"] == 2 and token_requests(sim) == 2


def test_a_wrong_client_secret_is_an_auth_error_that_does_not_quote_it() -> None:
    with bearer_sim() as sim:

        async def go() -> None:
            async with FhirClient(oauth2_settings(sim, secret="wrong-secret-123")) as client:
                await client.read("patient-001")

        with pytest.raises(FhirAuthError) as caught:
            asyncio.run(go())
        assert "invalid_client" in str(caught.value)
        assert "wrong-secret-123" not in str(caught.value)
        assert sim.state.requests["POST token 401"] == 1
        assert sim.state.requests["GET 200"] == 0


class Clock:
    """A clock that the fake sleep moves: waits take no time, and are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def satusehat_auth(sim: RunningSim, clock: Clock, query: str = "") -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(
        f"{sim.url}/oauth2/token{query}",
        CLIENT_ID,
        CLIENT_SECRET,
        clock=clock,
        sleep=clock.sleep,
    )


def test_a_token_endpoint_outage_is_retried_a_minute_apart() -> None:
    """SATUSEHAT's docs: one token request per minute after a failed attempt."""
    clock = Clock()
    with bearer_sim() as sim:
        sim.state.fail_next(2, 503)  # the token endpoint answers 503 twice, then a token

        async def go() -> dict[str, Any]:
            auth = satusehat_auth(sim, clock)
            async with FhirClient(oauth2_settings(sim), auth=auth) as client:
                return await client.read("patient-001")

        assert asyncio.run(go())["id"] == "patient-001"
        assert sim.state.requests["POST token 503"] == 2 and token_requests(sim) == 1
    assert len(clock.waits) == 2 and min(clock.waits) >= AFTER_FAILED_TOKEN_REQUEST == 60


def test_after_a_failed_token_fetch_callers_fail_at_once_until_the_minute_is_over() -> None:
    clock = Clock()
    with bearer_sim() as sim:
        sim.state.fail_next(3, 504)  # every attempt of the first fetch: a gateway's timeout

        async def go() -> tuple[str, str, dict[str, Any]]:
            auth = satusehat_auth(sim, clock)
            async with FhirClient(oauth2_settings(sim), auth=auth) as client:
                with pytest.raises(FhirTransientError) as first:
                    await client.read("patient-001")
                clock.now += 30  # within the minute: no request, the same failure
                with pytest.raises(FhirTransientError) as second:
                    await client.read("patient-001")
                asked = sim.state.requests["POST token 504"]
                clock.now += 31  # the minute is over: asked again
                patient = await client.read("patient-001")
                return str(first.value), str(second.value), {"asked": asked, **patient}

        first, second, last = asyncio.run(go())
    # The gateway's text/plain body is the readable reason.
    assert first == second == "POST token: 504 (Gateway Timeout) after 3 attempts"
    assert last["asked"] == 3 and last["id"] == "patient-001"
    assert sim.state.requests["POST token 504"] == 3 and token_requests(sim) == 1


def test_a_refused_token_request_is_not_repeated_within_the_minute() -> None:
    clock = Clock()
    with bearer_sim() as sim:

        async def go() -> None:
            auth = OAuth2ClientCredentials(
                f"{sim.url}/oauth2/token", CLIENT_ID, "wrong", clock=clock, sleep=clock.sleep
            )
            async with FhirClient(oauth2_settings(sim), auth=auth) as client:
                for _ in range(3):
                    with pytest.raises(FhirAuthError, match="invalid_client"):
                        await client.read("patient-001")
                    clock.now += 20

        asyncio.run(go())
        assert sim.state.requests["POST token 401"] == 1  # refused: not asked again this run


def test_a_token_url_with_the_grant_type_in_its_query_is_used_as_given() -> None:
    """SATUSEHAT: POST …/oauth2/v1/accesstoken?grant_type=client_credentials, id and secret in
    the form."""
    clock = Clock()
    with bearer_sim() as sim:

        async def go() -> dict[str, Any]:
            auth = satusehat_auth(sim, clock, "?grant_type=client_credentials")
            async with FhirClient(oauth2_settings(sim), auth=auth) as client:
                return await client.read("patient-001")

        assert asyncio.run(go())["id"] == "patient-001"
        assert sim.state.token_calls == [
            ("grant_type=client_credentials", ["client_id", "client_secret"])
        ]
    with bearer_sim() as sim:  # without it in the URL, the form carries it
        settings = oauth2_settings(sim)

        async def plain() -> None:
            async with FhirClient(settings) as client:
                await client.read("patient-001")

        asyncio.run(plain())
        assert sim.state.token_calls == [("", ["client_id", "client_secret", "grant_type"])]


def test_a_gateways_plain_text_5xx_is_a_readable_reason() -> None:
    with bearer_sim() as sim:

        async def go() -> str:
            async with FhirClient(oauth2_settings(sim, max_attempts=2)) as client:
                await client.read("patient-001")  # the token first
                sim.state.fail_next(2, 504)
                with pytest.raises(FhirTransientError) as caught:
                    await client.read("patient-001")
                return str(caught.value)

        assert asyncio.run(go()) == "GET Patient read: 504 (Gateway Timeout) after 2 attempts"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Everything logged: the job's JSON lines, every library's records (DEBUG), stdout/stderr."""
    logger = logging.getLogger(LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    stream = io.StringIO()
    configure_logging(stream)
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        captured = capfd.readouterr()
        return stream.getvalue() + caplog.text + captured.out + captured.err

    try:
        yield text
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


def oauth2_job_env(sim: RunningSim, state: Path, **extra: str) -> dict[str, str]:
    return {
        "FHIR_BASE_URL": sim.fhir,
        "FHIR_AUTH": "oauth2",
        "FHIR_TOKEN_URL": f"{sim.url}/oauth2/token",
        "FHIR_CLIENT_ID": CLIENT_ID,
        "FHIR_CLIENT_SECRET": CLIENT_SECRET,
        "SHEET_CSV": str(SAMPLE_SHEET),
        "RUN_DATE": DATE,
        "STATE_PATH": str(state),
        "FHIR_BACKOFF_SECONDS": "0.01",
        "CLOUD_RUN_EXECUTION": "exec-auth",
        **extra,
    }


def run_state(state: Path) -> Any:
    store = SqliteStore(state)
    try:
        return store.get_run(DATE), list(store.outcomes(DATE))
    finally:
        store.close()


def assert_no_secrets(text: str, sim: RunningSim, *secrets: str) -> None:
    assert sim.state.issued_tokens, "the test should have seen tokens"
    for value in (*secrets, *sim.state.issued_tokens):
        assert value not in text


def test_the_job_in_oauth2_mode_logs_no_secret_or_token(tmp_path: Path, logs: Any) -> None:
    with bearer_sim() as sim:
        # One request per row (no batch), so there are requests after the revocation below.
        config = load_settings(oauth2_job_env(sim, tmp_path / "s.db", FHIR_BATCH_SIZE="0"))
        assert CLIENT_SECRET not in repr(config) and CLIENT_SECRET not in str(config.for_log())
        # Half-way through, the registry revokes the token: one 401, one refresh, no loss.
        puts = iter(range(100))
        sim.state.on_before_put(lambda pid, state: next(puts) == 4 and state.revoke_tokens())
        assert run_task(config) == 0
        run, outcomes = run_state(tmp_path / "s.db")
        assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 10}
        # Requests in flight with the old token each get a 401; one new token serves them all.
        assert token_requests(sim) == 2 and sim.state.requests["PUT 401"] >= 1
        logged = logs()
        assert '"event": "task_finished"' in logged and "HTTP Request: POST" in logged
        assert_no_secrets(logged + repr(outcomes), sim, CLIENT_SECRET)


def test_the_job_with_a_refused_client_defers_rows_without_quoting_the_secret(
    tmp_path: Path, logs: Any
) -> None:
    with bearer_sim() as sim:
        env = oauth2_job_env(
            sim, tmp_path / "s.db", FHIR_CLIENT_SECRET="not-the-secret-77", FHIR_CONCURRENCY="1"
        )
        assert run_task(load_settings(env)) == 0
        run, outcomes = run_state(tmp_path / "s.db")
        assert run.counts == {"deferred": 10}
        assert all("refused our credentials" in o.reason for o in outcomes)
        assert sim.state.requests["POST token 401"] == 1  # it stopped asking
        text = logs() + repr(outcomes)
        assert '"event": "row_outcome"' in text
        assert "not-the-secret-77" not in text and CLIENT_SECRET not in text


def test_local_task_processes_get_the_client_secret_intact(tmp_path: Path) -> None:
    """``run --tasks 2`` in oauth2 mode: the parent hands its settings to two real task
    processes, the client secret included (they deferred every row when it arrived as ``***``)."""
    with bearer_sim() as sim:
        env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
        env.update(oauth2_job_env(sim, tmp_path / "s.db"))
        del env["CLOUD_RUN_EXECUTION"]  # the parent names the local execution
        done = run_cli("run", "--tasks", "2", env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        run, outcomes = run_state(tmp_path / "s.db")
        assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 10}
        assert run.task_count == 2
        assert sim.state.requests["POST token 401"] == 0
        # One token per task process that called the registry: task 0 (a child too) always,
        # for its check; task 1 unless task 0 had claimed every shard before it looked.
        assert token_requests(sim) in (1, 2)
        logged = (
            done.stdout
            + done.stderr
            + "".join(p.read_text() for p in (tmp_path / "logs").glob("*.jsonl"))
        )
        assert_no_secrets(logged + repr(outcomes), sim, CLIENT_SECRET)


def test_oauth2_settings_are_validated_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"FHIR_BASE_URL": "https://x/fhir", "SHEET_CSV": "s.csv", "FHIR_AUTH": "oauth2"}
        )
    message = str(caught.value)
    for name in ("FHIR_TOKEN_URL", "FHIR_CLIENT_ID", "FHIR_CLIENT_SECRET_SECRET"):
        assert name in message
    with pytest.raises(
        ConfigError, match="FHIR_AUTH: expected one of 'api-key', 'oauth2', 'google'"
    ):
        load_settings(
            {"FHIR_BASE_URL": "https://x/fhir", "SHEET_CSV": "s.csv", "FHIR_AUTH": "basic"}
        )


def test_the_job_in_google_mode_uses_application_default_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: Any
) -> None:
    """ADC from a service-account key file whose token_uri is the simulator's token endpoint:
    google-auth signs the JWT and exchanges it for real, against our endpoint, not Google's."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with bearer_sim() as sim:
        adc = tmp_path / "adc.json"
        adc.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "phonesync-test",
                    "private_key_id": "k1",
                    "private_key": pem,
                    "client_email": CLIENT_ID,
                    "client_id": "1",
                    "token_uri": f"{sim.url}/oauth2/token",
                }
            )
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "phonesync-test")
        env = {
            "FHIR_BASE_URL": sim.fhir,
            "FHIR_AUTH": "google",
            "SHEET_CSV": str(SAMPLE_SHEET),
            "RUN_DATE": DATE,
            "STATE_PATH": str(tmp_path / "s.db"),
            "FHIR_BACKOFF_SECONDS": "0.01",
            "CLOUD_RUN_EXECUTION": "exec-google",
            "FHIR_BATCH_SIZE": "0",  # one request per row: requests follow the revocation
        }
        puts = iter(range(100))
        sim.state.on_before_put(lambda pid, state: next(puts) == 2 and state.revoke_tokens())
        assert run_task(load_settings(env)) == 0
        run, outcomes = run_state(tmp_path / "s.db")
        assert run.status is RunStatus.SUCCEEDED and run.counts == {"updated": 10}
        # Requests in flight with the old token each get a 401; one new token serves them all.
        assert token_requests(sim) == 2 and sim.state.requests["PUT 401"] >= 1
        logged = logs() + repr(outcomes)
        assert '"event": "task_finished"' in logged
        assert_no_secrets(logged, sim, pem.splitlines()[1])
