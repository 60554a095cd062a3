"""One settings model: the environment first, flags over it, every problem listed at once, one
line each naming the variable; secrets never shown, and passed on intact."""

import json
import os
import re
import subprocess
import sys
import types
import typing
from datetime import date
from enum import Enum
from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from common.config import ENV_VARS, Settings, load_settings
from common.errors import ConfigError
from common.fhir import FhirSettings
from jobs.cli import EXIT_INPUT, main

ROOT = Path(__file__).resolve().parent.parent
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
    settings = load_settings(PRODUCTION)
    assert (settings.task_index, settings.task_count, settings.execution) == (
        3,
        4,
        "phonesync-x7k2p",
    )
    assert settings.cloud_run_task_attempt == 1
    assert settings.run_date == date(2025, 9, 23)
    assert settings.fhir.rate_limit == 150.0
    assert settings.fhir.api_key_secret == "projects/phonesync-prod/secrets/fhir-api-key"
    assert settings.state_backend == "firestore"


def test_flags_override_the_environment() -> None:
    settings = load_settings(
        {**LOCAL, "FHIR_CONCURRENCY": "4", "FHIR_RATE_LIMIT": "9"},
        {"run_date": date(2025, 9, 24), "fhir": {"concurrency": 8}, "sheet_csv": None},
    )
    assert settings.run_date == date(2025, 9, 24)
    assert settings.fhir.concurrency == 8
    assert settings.fhir.rate_limit == 9.0  # the flags replace only what they name
    assert settings.sheet_csv == Path("sheet.csv")  # None means "flag not given"


def test_local_runs_get_an_execution_name() -> None:
    assert load_settings(LOCAL).execution.startswith("local-")


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    env = {
        "STATE_BACKEND": "firestore",
        "RUN_DATE": "23-09-2025",
        "CLOUD_RUN_TASK_INDEX": "4",
        "CLOUD_RUN_TASK_COUNT": "4",
        "FHIR_CONCURRENCY": "many",
        "FHIR_API_KEY_SECRET": "fhir-api-key",
    }
    with pytest.raises(ConfigError) as exc:
        load_settings(env)
    assert exc.value.problems == [
        "RUN_DATE: expected YYYY-MM-DD, got '23-09-2025'",
        "FHIR_API_KEY_SECRET: expected projects/PROJECT/secrets/NAME",
        "FHIR_CONCURRENCY: expected a whole number, got 'many'",
        "GOOGLE_CLOUD_PROJECT: required with STATE_BACKEND=firestore",
        "CLOUD_RUN_TASK_INDEX: must be in 0..3",
        "FHIR_BASE_URL: required (the FHIR R4 base, e.g. https://…/fhir)",
        "FAILURE_TOPIC: required with STATE_BACKEND=firestore (deferred rows go there)",
        # FHIR_API_KEY_SECRET was given (though malformed): not also reported as missing
        "LEDGER_KEY_SECRET: required with STATE_BACKEND=firestore (NIK hashing key)",
    ]


def test_a_misspelt_fhir_setting_is_reported_not_ignored() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({**LOCAL, "FHIR_MAX_ATTEMPT": "3"})
    assert exc.value.problems == ["FHIR_MAX_ATTEMPT: not a setting phonesync knows (misspelt?)"]


def test_only_task_0_needs_the_sheet() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "SHEET_ID"}
    assert load_settings(env).task_index == 3
    with pytest.raises(ConfigError, match="SHEET_ID or SHEET_CSV"):
        load_settings({**env, "CLOUD_RUN_TASK_INDEX": "0"})


@pytest.mark.parametrize(
    ("role", "needs"),
    [
        ("replay", "FHIR_BASE_URL"),
        ("publish", "FAILURE_TOPIC and GOOGLE_CLOUD_PROJECT"),
    ],
)
def test_each_role_needs_its_own_settings(role: typing.Any, needs: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({}, role=role)
    assert [p.split(":")[0] for p in exc.value.problems] == [needs]
    assert load_settings({}, role="store").state_backend == "sqlite"  # status needs no FHIR


def test_oauth2_needs_its_endpoint_client_and_secret() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({**LOCAL, "FHIR_AUTH": "oauth2"})
    assert [p.split(":")[0] for p in exc.value.problems] == [
        "FHIR_TOKEN_URL",
        "FHIR_CLIENT_ID",
        "FHIR_CLIENT_SECRET_SECRET",
    ]


SECRETS = {
    "FHIR_API_KEY": "s3cr3t-key",
    "FHIR_CLIENT_SECRET": "s3cr3t-client",
    "LEDGER_KEY": "s3cr3t-ledger",
    "SHEETS_ACCESS_TOKEN": "s3cr3t-token",
}


def test_secrets_are_never_shown() -> None:
    settings = load_settings({**LOCAL, **SECRETS})
    assert settings.fhir.api_key is not None
    assert settings.fhir.api_key.get_secret_value() == "s3cr3t-key"
    for shown in (
        repr(settings),
        str(settings),
        json.dumps(settings.for_log()),
        repr(settings.fhir),
    ):
        assert "s3cr3t" not in shown


def test_settings_pass_through_the_environment_intact() -> None:
    """What the local parent hands its task processes loads as the very same settings."""
    settings = load_settings(
        {**LOCAL, **SECRETS, "FHIR_AUTH": "oauth2", "FHIR_TOKEN_URL": "http://t/token"},
        {"fhir": {"client_id": "phonesync", "batch_size": 0}, "lookback_days": 3},
    )
    env = settings.to_env()
    assert {env[name] for name in SECRETS} == set(SECRETS.values())
    assert load_settings(env) == settings


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
        "SHEETS_ACCESS_TOKEN",
    ):
        assert name in ENV_VARS


@pytest.mark.parametrize(
    ("value", "size"), [(None, None), ("auto", None), ("AUTO", None), ("0", 0), ("50", 50)]
)
def test_fhir_batch_size_is_auto_unless_given(value: str | None, size: int | None) -> None:
    env = LOCAL if value is None else {**LOCAL, "FHIR_BATCH_SIZE": value}
    assert load_settings(env).fhir.batch_size == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fifty", "FHIR_BATCH_SIZE: expected a whole number, got 'fifty'"),
        ("-1", "FHIR_BATCH_SIZE: must be at least 0, got '-1'"),
        ("1001", "FHIR_BATCH_SIZE: must be at most 1000, got '1001'"),
    ],
)
def test_a_bad_fhir_batch_size_is_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings({**LOCAL, "FHIR_BATCH_SIZE": value})


# -- every numeric and enumerated setting, set to what it cannot be ----------------------------


def _invalid_values(field: FieldInfo) -> list[str]:
    """Values this field must refuse, read off its type and bounds (so new settings are
    covered by the table without editing it)."""
    kind = field.annotation
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(kind) if a is not type(None)] if optional else [kind]
    base = args[0]
    if typing.get_origin(base) is typing.Annotated:
        base = typing.get_args(base)[0]
    bounds = {
        key: getattr(m, key)
        for m in field.metadata + [m for a in args for m in getattr(a, "__metadata__", ())]
        for key in ("ge", "gt", "le")
        if hasattr(m, key)
    }
    if typing.get_origin(base) is typing.Literal or (
        isinstance(base, type) and issubclass(base, Enum)
    ):
        return ["bogus"]
    if base in (int, float):
        values = ["many"]
        if base is float:
            values.append("nan")
        if "ge" in bounds:
            values.append(str(bounds["ge"] - 1))
        if "gt" in bounds:
            values.append(str(bounds["gt"]))
        if "le" in bounds:
            values.append(str(bounds["le"] + 1))
        return values
    return []


def _invalid_settings() -> list[tuple[str, str]]:
    fields = [(f"FHIR_{name.upper()}", f) for name, f in FhirSettings.model_fields.items()] + [
        (name.upper(), f) for name, f in Settings.model_fields.items() if name != "fhir"
    ]
    return [(env, value) for env, f in fields for value in _invalid_values(f)]


INVALID = _invalid_settings()


def test_the_table_covers_every_numeric_and_enumerated_setting() -> None:
    covered = {name for name, _ in INVALID}
    assert {"FHIR_MAX_ATTEMPTS", "FHIR_AUTH", "FHIR_TRANSPORT", "PHONE_FORMAT"} <= covered
    assert {"FHIR_WRITE", "FHIR_PATCH_OPS"} <= covered
    assert {"STATE_BACKEND", "LOOKBACK_DAYS", "CLOUD_RUN_TASK_COUNT", "LEASE_SECONDS"} <= covered
    assert len(covered) >= 20


@pytest.mark.parametrize(("name", "value"), INVALID)
def test_an_invalid_setting_is_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({**LOCAL, name: value})
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"{name}: ")
    assert "\n" not in exc.value.problems[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [case for case in INVALID if case[0] != "CLOUD_RUN_TASK_COUNT"],  # --tasks sets it
)
def test_the_cli_refuses_it_in_one_line(
    name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: typing.Any
) -> None:
    """``phonesync run --tasks 1`` (a person at a terminal): one line on stderr, exit 2."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, text in {**LOCAL, "STATE_PATH": str(tmp_path / "s.sqlite3"), name: value}.items():
        monkeypatch.setenv(var, text)
    assert main(["run", "--tasks", "1"]) == EXIT_INPUT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"phonesync: error: {name}: ")


@pytest.mark.parametrize(("name", "value"), INVALID)
def test_a_cloud_run_task_refuses_it_in_one_log_line(
    name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: typing.Any
) -> None:
    """``phonesync run`` as Cloud Run runs it: one ``config_invalid`` JSON line, exit 2."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    env = {**LOCAL, "STATE_PATH": str(tmp_path / "s.sqlite3"), "CLOUD_RUN_EXECUTION": "x-1"}
    for var, text in {**env, name: value}.items():
        monkeypatch.setenv(var, text)
    assert main(["run"]) == EXIT_INPUT
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("event") for line in lines] == ["config_invalid"]  # and nothing else
    assert lines[0]["severity"] == "ERROR"
    assert [p.split(":")[0] for p in lines[0]["problems"]] == [name]


@pytest.mark.parametrize("tasks", [["--tasks", "2"], []])
def test_a_real_process_shows_no_traceback(tasks: list[str], tmp_path: Path) -> None:
    """The issue's case: FHIR_MAX_ATTEMPTS=0 crashed with a traceback (exit 1, retried)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(LOCAL, STATE_PATH=str(tmp_path / "s.sqlite3"), FHIR_MAX_ATTEMPTS="0")
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "run", *tasks],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_INPUT
    assert "Traceback" not in done.stdout + done.stderr
    assert "FHIR_MAX_ATTEMPTS: must be at least 1, got '0'" in done.stdout + done.stderr


def test_the_manifest_is_kept_no_longer_than_the_records_that_name_it() -> None:
    settings = load_settings({**LOCAL, "MANIFEST_RETENTION_DAYS": "5", "RETENTION_DAYS": "5"})
    assert (settings.manifest_retention_days, settings.retention_days) == (5, 5)
    assert load_settings(LOCAL).manifest_retention_days == 3
    with pytest.raises(ConfigError) as exc:
        load_settings({**LOCAL, "MANIFEST_RETENTION_DAYS": "10", "RETENTION_DAYS": "5"})
    assert exc.value.problems == [
        "MANIFEST_RETENTION_DAYS: must not exceed RETENTION_DAYS (5): the run records that name"
        " the manifest outlive it, never the other way round"
    ]
