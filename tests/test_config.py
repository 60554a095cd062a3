"""Configuration comes from the environment, flags override, and every problem is listed at once."""

import re
from datetime import date
from pathlib import Path

import pytest

from common.config import ENV_VARS, load_config
from common.errors import ConfigError

LOCAL = {"FHIR_BASE_URL": "http://127.0.0.1:8080/fhir", "SHEET_CSV": "sheet.csv"}
PRODUCTION = {
    "FHIR_BASE_URL": "https://fhir.example.go.id/fhir",
    "SHEET_ID": "1AbC",
    "STATE_BACKEND": "firestore",
    "GOOGLE_CLOUD_PROJECT": "phonesync-prod",
    "FAILURE_TOPIC": "phonesync-failures",
    "FHIR_API_KEY_SECRET": "projects/phonesync-prod/secrets/fhir-api-key",
    "LEDGER_KEY_SECRET": "projects/phonesync-prod/secrets/ledger-hmac-key",
    "CLOUD_RUN_TASK_INDEX": "3",
    "CLOUD_RUN_TASK_COUNT": "4",
    "CLOUD_RUN_EXECUTION": "phonesync-x7k2p",
    "CLOUD_RUN_TASK_ATTEMPT": "1",
    "RUN_DATE": "2025-09-23",
    "FHIR_RATE_LIMIT": "150",
}


def test_cloud_run_environment_is_read() -> None:
    config = load_config(PRODUCTION)
    assert (config.task_index, config.task_count, config.execution) == (3, 4, "phonesync-x7k2p")
    assert config.cloud_run_task_attempt == 1
    assert config.run_date == date(2025, 9, 23)
    assert config.fhir_rate_limit == 150.0
    assert config.state_backend == "firestore"


def test_flags_override_the_environment() -> None:
    config = load_config(
        LOCAL, {"run_date": date(2025, 9, 24), "fhir_concurrency": 8, "sheet_csv": None}
    )
    assert config.run_date == date(2025, 9, 24)
    assert config.fhir_concurrency == 8
    assert config.sheet_csv == Path("sheet.csv")  # None means "flag not given"


def test_local_runs_get_an_execution_name() -> None:
    assert load_config(LOCAL).execution.startswith("local-")


def test_every_problem_is_reported_at_once() -> None:
    env = {
        "STATE_BACKEND": "firestore",
        "RUN_DATE": "23-09-2025",
        "CLOUD_RUN_TASK_INDEX": "4",
        "CLOUD_RUN_TASK_COUNT": "4",
        "FHIR_CONCURRENCY": "many",
        "FHIR_API_KEY_SECRET": "fhir-api-key",
    }
    with pytest.raises(ConfigError) as exc:
        load_config(env)
    message = str(exc.value)
    for expected in (
        "RUN_DATE: expected YYYY-MM-DD",
        "FHIR_CONCURRENCY: expected a whole number",
        "FHIR_BASE_URL: required",
        "CLOUD_RUN_TASK_INDEX: must be in 0..3",
        "FHIR_API_KEY_SECRET: expected projects/PROJECT/secrets/NAME",
        "GOOGLE_CLOUD_PROJECT: required",
        "FAILURE_TOPIC: required",
        "LEDGER_KEY_SECRET: required",
    ):
        assert expected in message


def test_only_task_0_needs_the_sheet() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "SHEET_ID"}
    assert load_config(env).task_index == 3
    with pytest.raises(ConfigError, match="SHEET_ID or SHEET_CSV"):
        load_config({**env, "CLOUD_RUN_TASK_INDEX": "0"})


def test_the_api_key_is_hidden_in_the_startup_summary() -> None:
    config = load_config({**LOCAL, "FHIR_API_KEY": "s3cr3t-key"})
    assert config.fhir_api_key == "s3cr3t-key"
    assert "s3cr3t-key" not in repr(config.redacted())
    assert "s3cr3t-key" not in repr(config)


def test_env_var_names_are_the_documented_ones() -> None:
    for name in (
        "RUN_DATE",
        "SHEET_ID",
        "SHEET_RANGE",
        "FHIR_BASE_URL",
        "FHIR_API_KEY_SECRET",
        "GOOGLE_CLOUD_PROJECT",
        "STATE_BACKEND",
        "FAILURE_TOPIC",
        "FHIR_CONCURRENCY",
        "FHIR_RATE_LIMIT",
        "FHIR_TIMEOUT_SECONDS",
        "FHIR_DEADLINE_SECONDS",
        "CLOUD_RUN_TASK_INDEX",
        "CLOUD_RUN_TASK_COUNT",
        "CLOUD_RUN_EXECUTION",
        "CLOUD_RUN_TASK_ATTEMPT",
        "LOOKBACK_DAYS",
        "LEDGER_KEY_SECRET",
    ):
        assert name in ENV_VARS


@pytest.mark.parametrize(
    ("value", "size"), [(None, None), ("auto", None), ("AUTO", None), ("0", 0), ("50", 50)]
)
def test_fhir_batch_size_is_auto_unless_given(value: str | None, size: int | None) -> None:
    env = LOCAL if value is None else {**LOCAL, "FHIR_BATCH_SIZE": value}
    assert load_config(env).fhir_batch_size == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fifty", "FHIR_BATCH_SIZE: expected a whole number or auto, got 'fifty'"),
        ("-1", "FHIR_BATCH_SIZE: must be auto or 0 (no batch) to 1000 entries per Bundle"),
        ("1001", "FHIR_BATCH_SIZE: must be auto or 0 (no batch) to 1000 entries per Bundle"),
    ],
)
def test_a_bad_fhir_batch_size_is_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config({**LOCAL, "FHIR_BATCH_SIZE": value})
