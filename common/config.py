"""The job's configuration: environment first (Cloud Run style), CLI flags override.

Everything is validated at start and every problem is reported in one error, so an operator
fixes the deployment once instead of once per redeploy.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.jakarta import jakarta_today as jakarta_today
from common.phones import PhoneFormat

STATE_BACKENDS = ("sqlite", "firestore")
#: Servers cap Bundles (HAPI's default is 1,000 entries); past ~100 nothing is gained (README).
MAX_BATCH_SIZE = 1000
FHIR_AUTH_MODES = ("api-key", "oauth2", "google")
_SECRET_NAME = re.compile(r"projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?")


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One task's settings. Field names are the env var names, lower-cased."""

    run_date: date | None = None  # None: task 0 fixes today's Jakarta date for the execution
    lookback_days: int = 1
    sheet_csv: Path | None = None  # local runs: a CSV export instead of the Sheets API
    sheet_id: str | None = None
    sheet_range: str = "A:Z"
    sheets_api_url: str = "https://sheets.googleapis.com"
    # The officers' report tab: a spreadsheet shared with the job's account as Editor (optional).
    report_sheet_id: str | None = None
    report_sheet_tab: str = "phonesync"
    fhir_base_url: str = ""
    # Local use only; production reads FHIR_API_KEY_SECRET. Never in repr or logs.
    fhir_api_key: str | None = field(default=None, repr=False)
    fhir_api_key_secret: str | None = None
    # How to authenticate: api-key (x-api-key), oauth2 (client credentials) or google (ADC).
    fhir_auth: str = "api-key"
    fhir_token_url: str | None = None  # oauth2
    fhir_client_id: str | None = None  # oauth2
    fhir_client_secret_secret: str | None = None  # oauth2: Secret Manager name of the secret
    # Local use only; production reads FHIR_CLIENT_SECRET_SECRET. Never in repr or logs.
    fhir_client_secret: str | None = field(default=None, repr=False)
    ledger_key_secret: str | None = None
    # Local use and tests only (Secret Manager has no emulator). Never in repr or logs.
    ledger_key: str | None = field(default=None, repr=False)
    google_cloud_project: str | None = None
    state_backend: str = "sqlite"
    state_path: Path = Path(".phonesync") / "state.sqlite3"
    retention_days: int = 400  # Firestore documents carry expire_at = now + this (TTL policy)
    failure_topic: str | None = None
    fhir_concurrency: int = 64
    fhir_rate_limit: float = 200.0
    fhir_timeout_seconds: float = 15.0
    fhir_deadline_seconds: float = 600.0
    fhir_max_attempts: int = 6
    fhir_backoff_seconds: float = 0.25  # base of the exponential backoff (full jitter)
    # Entries per batch Bundle; 0 = one request per search/update; None ("auto", the default):
    # common.fhir.DEFAULT_BATCH_SIZE when the server's CapabilityStatement lists batch, else 0.
    fhir_batch_size: int | None = None
    phone_format: PhoneFormat = PhoneFormat.NATIONAL
    cloud_run_task_index: int = 0
    cloud_run_task_count: int = 1
    cloud_run_execution: str = ""
    cloud_run_task_attempt: int = 0
    lease_seconds: float = 120.0
    manifest_timeout_seconds: float = 600.0

    @property
    def task_index(self) -> int:
        return self.cloud_run_task_index

    @property
    def task_count(self) -> int:
        return self.cloud_run_task_count

    @property
    def execution(self) -> str:
        return self.cloud_run_execution

    def redacted(self) -> dict[str, Any]:
        """The settings for a start-up log line, with the API key hidden."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for secret in ("fhir_api_key", "fhir_client_secret", "ledger_key"):
            if out[secret]:
                out[secret] = "***"
        return {k: str(v) if isinstance(v, Path | date) else v for k, v in out.items()}


ENV_VARS = tuple(f.name.upper() for f in fields(JobConfig))


def load_config(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    role: str = "task",
) -> JobConfig:
    """Read ``env`` (default ``os.environ``), apply non-None ``overrides``, validate everything.

    ``role="replay"`` (the replay function) needs no sheet and no failure topic;
    ``role="publish"`` (``phonesync replay`` re-publishing) needs the topic but no FHIR server.
    """
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    for f in fields(JobConfig):
        value = env.get(f.name.upper())
        if value is not None and value.strip() != "":
            raw[f.name] = value.strip()
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    problems: list[str] = []
    values: dict[str, Any] = {}
    for f in fields(JobConfig):
        if f.name not in raw:
            continue
        try:
            values[f.name] = _convert(f.name, raw[f.name])
        except ValueError as exc:
            problems.append(f"{f.name.upper()}: {exc}")
    config = JobConfig(**values)
    problems.extend(_check(config, role))
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    if not config.cloud_run_execution:
        # Local runs: one name per process tree (phonesync run --tasks N passes it down).
        local = f"local-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        config = JobConfig(**{**values, "cloud_run_execution": local})
    return config


def _convert(name: str, value: object) -> Any:
    kind = {f.name: f.type for f in fields(JobConfig)}[name]
    if not isinstance(value, str):
        return value
    if kind == "date | None":
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected YYYY-MM-DD, got {value!r}") from None
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if kind == "int | None":
        if value.lower() == "auto":
            return None
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected a whole number or auto, got {value!r}") from None
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if kind in ("Path", "Path | None"):
        return Path(value)
    if kind == "PhoneFormat":
        try:
            return PhoneFormat(value)
        except ValueError:
            raise ValueError(f"expected national or e164, got {value!r}") from None
    return value


def _check(c: JobConfig, role: str) -> list[str]:
    problems = []
    if c.state_backend not in STATE_BACKENDS:
        problems.append(
            f"STATE_BACKEND: expected one of {', '.join(STATE_BACKENDS)}, got {c.state_backend!r}"
        )
    if role == "publish":
        if not c.failure_topic or not c.google_cloud_project:
            problems.append("FAILURE_TOPIC and GOOGLE_CLOUD_PROJECT: required to re-publish rows")
    elif not c.fhir_base_url:
        problems.append("FHIR_BASE_URL: required (the FHIR R4 base, e.g. https://…/fhir)")
    elif not c.fhir_base_url.startswith(("http://", "https://")):
        problems.append("FHIR_BASE_URL: must start with http:// or https://")
    if role == "task" and c.task_index == 0 and (c.sheet_csv is None) == (c.sheet_id is None):
        problems.append(
            "SHEET_ID or SHEET_CSV: exactly one is required (the Sheet, or a CSV export)"
        )
    if not c.report_sheet_tab or len(c.report_sheet_tab) > 100:
        problems.append("REPORT_SHEET_TAB: a tab name of 1 to 100 characters")
    if c.cloud_run_task_count < 1:
        problems.append("CLOUD_RUN_TASK_COUNT: must be at least 1")
    elif not 0 <= c.cloud_run_task_index < c.cloud_run_task_count:
        problems.append(f"CLOUD_RUN_TASK_INDEX: must be in 0..{c.cloud_run_task_count - 1}")
    if c.fhir_auth not in FHIR_AUTH_MODES:
        problems.append(
            f"FHIR_AUTH: expected one of {', '.join(FHIR_AUTH_MODES)}, got {c.fhir_auth!r}"
        )
    elif c.fhir_auth == "oauth2" and role != "publish":
        if not (c.fhir_token_url or "").startswith(("http://", "https://")):
            problems.append("FHIR_TOKEN_URL: required with FHIR_AUTH=oauth2 (https://…)")
        if not c.fhir_client_id:
            problems.append("FHIR_CLIENT_ID: required with FHIR_AUTH=oauth2")
        if not (c.fhir_client_secret_secret or c.fhir_client_secret):
            problems.append(
                "FHIR_CLIENT_SECRET_SECRET: required with FHIR_AUTH=oauth2 (Secret Manager name)"
            )
    for name in ("fhir_api_key_secret", "fhir_client_secret_secret", "ledger_key_secret"):
        value = getattr(c, name)
        if value and not _SECRET_NAME.fullmatch(value):
            problems.append(f"{name.upper()}: expected projects/PROJECT/secrets/NAME")
    if c.state_backend == "firestore":
        if not c.google_cloud_project:
            problems.append("GOOGLE_CLOUD_PROJECT: required with STATE_BACKEND=firestore")
        if role == "task" and not c.failure_topic:
            problems.append(
                "FAILURE_TOPIC: required with STATE_BACKEND=firestore (deferred rows go there)"
            )
        if (
            role != "publish"
            and c.fhir_auth == "api-key"
            and not (c.fhir_api_key_secret or c.fhir_api_key)
        ):
            problems.append(
                "FHIR_API_KEY_SECRET: required with STATE_BACKEND=firestore and FHIR_AUTH=api-key"
            )
        if role != "publish" and not (c.ledger_key_secret or c.ledger_key):
            problems.append(
                "LEDGER_KEY_SECRET: required with STATE_BACKEND=firestore (NIK hashing key)"
            )
    for name in (
        "fhir_concurrency",
        "fhir_timeout_seconds",
        "fhir_deadline_seconds",
        "lease_seconds",
        "manifest_timeout_seconds",
    ):
        if getattr(c, name) <= 0:
            problems.append(f"{name.upper()}: must be greater than 0")
    if c.fhir_batch_size is not None and not 0 <= c.fhir_batch_size <= MAX_BATCH_SIZE:
        problems.append(
            f"FHIR_BATCH_SIZE: must be auto or 0 (no batch) to {MAX_BATCH_SIZE} entries per Bundle"
        )
    if c.fhir_rate_limit < 0:
        problems.append("FHIR_RATE_LIMIT: must be 0 (unlimited) or more")
    if c.retention_days < 1:
        problems.append("RETENTION_DAYS: must be at least 1")
    if not 0 <= c.lookback_days <= 31:
        problems.append("LOOKBACK_DAYS: must be between 0 and 31")
    if c.cloud_run_task_attempt < 0:
        problems.append("CLOUD_RUN_TASK_ATTEMPT: must be 0 or more")
    return problems


def lookback_start(run_date: date, days: int) -> date:
    return run_date - timedelta(days=days)
