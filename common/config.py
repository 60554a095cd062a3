"""phonesync's one settings model: environment first (Cloud Run style), CLI flags override.

Every entry point loads it the same way (:func:`load_settings`): the Cloud Run task, the local
``--tasks`` parent and its children, the replay function and the operator commands. Each field
is the environment variable of its name in upper case; the FHIR client's part is the nested
:class:`~common.fhir.FhirSettings` (``FHIR_BASE_URL`` → ``settings.fhir.base_url``), which the
client takes as it is.

Everything is validated at load and every problem is reported at once, one line each naming
the variable (:class:`~common.errors.ConfigError`), so an operator fixes a deployment once
instead of once per redeploy. Secrets are ``SecretStr``: no repr, dump or log line shows them;
:meth:`Settings.to_env` is the one place they are written out, for the local task processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources import PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from common.errors import ConfigError
from common.fhir._settings import FhirSettings, HttpUrl, SecretName
from common.jakarta import jakarta_today
from common.phones import PhoneFormat
from common.quiet_days import QuietWeekdays
from common.telemetry import LogFormat

#: Who loads the settings, and so which settings are required:
#: ``task`` the nightly job (task 0 also reads the sheet); ``replay`` the replay function and
#: ``phonesync replay --via direct`` (FHIR, no sheet); ``publish`` ``phonesync replay --via
#: pubsub`` (the failure topic, no FHIR); ``store`` the read-only operator commands;
#: ``reconcile`` ``phonesync reconcile`` (the sheet and FHIR, every task: each reads the sheet).
Role = Literal["task", "replay", "publish", "store", "reconcile"]
StateBackend = Literal["sqlite", "firestore"]

__all__ = [
    "ENV_VARS",
    "ConfigError",
    "Role",
    "Settings",
    "jakarta_today",
    "load_settings",
]


class Settings(BaseSettings):
    """One process's settings. Field names are the env var names, lower-cased."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=False,
        env_ignore_empty=True,
        env_nested_delimiter="_",
        env_nested_max_split=1,  # FHIR_BASE_URL → fhir.base_url; nothing else nests
        str_strip_whitespace=True,
        extra="ignore",
    )

    run_date: date | None = None  # None: task 0 fixes today's Jakarta date for the execution
    lookback_days: int = Field(default=1, ge=0, le=31)
    #: Days of the week without visits (``sat,sun``): a window of only such dates may be empty.
    quiet_weekdays: QuietWeekdays = frozenset()
    #: A night also takes the dates since the last date a finished run covered, at most this
    #: many before its own (a dates' rows are its candidates: memory and FHIR calls grow with it).
    catch_up_days: int = Field(default=7, ge=0, le=14)
    #: A row waiting on a field officer is checked again every night while its date (an
    #: unreadable one: the night it was first reported) is at most this many days old; dates no
    #: run covered are reported for as long.
    action_days: int = Field(default=30, ge=1, le=90)
    sheet_csv: Path | None = None  # local runs: a CSV export instead of the Sheets API
    sheet_id: str | None = None
    sheet_range: str = "A:Z"
    sheets_api_url: HttpUrl = "https://sheets.googleapis.com"
    #: A bearer token for the Sheets API instead of the job's credentials (the simulator).
    sheets_access_token: SecretStr | None = None
    # The officers' report tab: a spreadsheet shared with the job's account as Editor (optional).
    report_sheet_id: str | None = None
    report_sheet_tab: str = Field(default="phonesync", min_length=1, max_length=100)
    fhir: FhirSettings = FhirSettings()
    ledger_key_secret: SecretName | None = None
    #: Local runs and tests only (Secret Manager has no emulator).
    ledger_key: SecretStr | None = None
    google_cloud_project: str | None = None
    state_backend: StateBackend = "sqlite"
    state_path: Path = Path(".phonesync") / "state.sqlite3"
    #: Firestore documents carry expire_at = now + this (TTL policy).
    retention_days: int = Field(default=400, ge=1)
    #: The manifest (each row's full NIK and number, for the tasks and replays of its run) is
    #: deleted this many days after it is written: its own TTL, far shorter than the hashed
    #: ledger's; a replay after that is a rerun of the date.
    manifest_retention_days: int = Field(default=3, ge=1, le=31)
    failure_topic: str | None = None
    phone_format: PhoneFormat = PhoneFormat.NATIONAL
    cloud_run_task_index: int = Field(default=0, ge=0)
    cloud_run_task_count: int = Field(default=1, ge=1)
    cloud_run_execution: str = ""
    cloud_run_task_attempt: int = Field(default=0, ge=0)
    lease_seconds: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    manifest_timeout_seconds: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    #: ``json`` for Cloud Logging, ``text`` for a person; ``auto``: ``json`` on Cloud Run.
    log_format: LogFormat = "auto"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment is read by load_settings alone (_MappingEnv), so that what it hands
        # over is all there is: no second read of os.environ, no .env file, no secrets folder.
        return (init_settings,)

    @property
    def task_index(self) -> int:
        return self.cloud_run_task_index

    @property
    def task_count(self) -> int:
        return self.cloud_run_task_count

    @property
    def execution(self) -> str:
        return self.cloud_run_execution

    def for_log(self) -> dict[str, Any]:
        """The settings for the ``task_started`` line: secrets shown as ``**********``."""
        return self.model_dump(mode="json")

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables that load them again, secrets included
        (for the local task processes, which must get them intact); unset values left out."""
        env: dict[str, str] = {}
        for name, value in self:
            if name == "fhir":
                env.update(_as_env(dict(self.fhir), prefix="FHIR_"))
            else:
                env.update(_as_env({name: value}))
        return env


#: Every environment variable the settings read (terraform and the docs are checked against it).
ENV_VARS: tuple[str, ...] = tuple(
    name.upper() if name != "fhir" else f"FHIR_{nested.upper()}"
    for name in Settings.model_fields
    for nested in (FhirSettings.model_fields if name == "fhir" else [""])
)


def load_settings(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    role: Role = "task",
) -> Settings:
    """Read ``env`` (default ``os.environ``), apply non-None ``overrides`` (``fhir`` a mapping of
    its own), validate everything; :class:`ConfigError` lists every problem, one line each."""
    given = _given(overrides or {})
    problems: list[str] = []
    try:
        settings = _build(env, given)
    except ValidationError as exc:
        problems += [f"{_env_name(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        settings = _build(env, given, dropping=[tuple(e["loc"]) for e in exc.errors()])
    reported = {p.split(":")[0] for p in problems}  # a malformed value is not also "missing"
    problems += [p for p in _role_problems(settings, role) if p.split(":")[0] not in reported]
    if problems:
        raise ConfigError(problems)
    if not settings.cloud_run_execution:
        # Local runs: one name per process tree (phonesync run --tasks N passes it down).
        local = f"local-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        settings = settings.model_copy(update={"cloud_run_execution": local})
    return settings


# -- loading ---------------------------------------------------------------------------------


class _MappingEnv(EnvSettingsSource):
    """pydantic-settings' env source on a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env  # read by _load_env_vars, which the base class calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._env, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _build(
    env: Mapping[str, str] | None,
    given: Mapping[str, Any],
    dropping: Iterable[tuple[str | int, ...]] = (),
) -> Settings:
    """The settings from ``env`` and ``given``; the fields at ``dropping`` (invalid ones) left
    at their defaults, so that the rest can still be checked."""
    values = _nested_update(_MappingEnv(Settings, os.environ if env is None else env)(), given)
    for loc in dropping:
        _drop(values, loc)
    return Settings.model_validate(values)


def _given(overrides: Mapping[str, object]) -> dict[str, Any]:
    """The overrides that were given (None means "flag not given"), nested ones too."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            nested = _given(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def _nested_update(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _nested_update(out[key], value)
        else:
            out[key] = value
    return out


def _drop(values: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    """Drop the setting at ``loc``: the deepest mapping on its path (an item of a list
    setting, ``("quiet_weekdays", 0)``, drops the whole setting)."""
    target: Any = values
    for index, part in enumerate(loc):
        child = target.get(part) if isinstance(target, dict) else None
        if index == len(loc) - 1 or not isinstance(child, dict):
            if isinstance(target, dict):
                target.pop(part, None)
            return
        target = child


def _env_name(loc: tuple[str | int, ...]) -> str:
    return "_".join(str(part) for part in loc[: 2 if loc[0] == "fhir" else 1]).upper()


def _describe(error: Any) -> str:
    """pydantic's error as a person fixing an environment variable wants it."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    got = f", got {value!r}" if isinstance(value, str) else ""
    if kind == "int_parsing" or kind == "int_from_float":
        return f"expected a whole number{got}"
    if kind == "float_parsing":
        return f"expected a number{got}"
    if kind == "finite_number":
        return f"expected a finite number{got}"
    if kind in ("date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"):
        return f"expected YYYY-MM-DD{got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}{got}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}{got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}{got}"
    if kind in ("literal_error", "enum"):
        return f"expected one of {ctx['expected'].replace(' or ', ', ')}{got}"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters"
    if kind == "extra_forbidden":
        return "not a setting phonesync knows (misspelt?)"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']}{got}"


# -- what each role needs ---------------------------------------------------------------------


def _role_problems(s: Settings, role: Role) -> list[str]:
    problems: list[str] = []
    fhir = s.fhir
    firestore = s.state_backend == "firestore"
    if s.manifest_retention_days > s.retention_days:
        problems.append(
            f"MANIFEST_RETENTION_DAYS: must not exceed RETENTION_DAYS ({s.retention_days}):"
            " the run records that name the manifest outlive it, never the other way round"
        )
    calls_fhir = role in ("task", "replay", "reconcile")
    if firestore and not s.google_cloud_project:
        problems.append("GOOGLE_CLOUD_PROJECT: required with STATE_BACKEND=firestore")
    if not s.cloud_run_task_index < s.cloud_run_task_count:
        problems.append(f"CLOUD_RUN_TASK_INDEX: must be in 0..{s.cloud_run_task_count - 1}")
    if role == "publish" and not (s.failure_topic and s.google_cloud_project):
        problems.append("FAILURE_TOPIC and GOOGLE_CLOUD_PROJECT: required to re-publish rows")
    if calls_fhir:
        if not fhir.base_url:
            problems.append("FHIR_BASE_URL: required (the FHIR R4 base, e.g. https://…/fhir)")
        problems += [f"FHIR_{name.upper()}: {why}" for name, why in fhir.problems()]
    reads_sheet = (role == "task" and s.task_index == 0) or role == "reconcile"
    if reads_sheet and (s.sheet_csv is None) == (s.sheet_id is None):
        problems.append(
            "SHEET_ID or SHEET_CSV: exactly one is required (the Sheet, or a CSV export)"
        )
    if firestore and role == "task" and not s.failure_topic:
        problems.append(
            "FAILURE_TOPIC: required with STATE_BACKEND=firestore (deferred rows go there)"
        )
    if firestore and calls_fhir:
        if fhir.auth == "api-key" and fhir.api_key is None and not fhir.api_key_secret:
            problems.append(
                "FHIR_API_KEY_SECRET: required with STATE_BACKEND=firestore and FHIR_AUTH=api-key"
            )
        if s.ledger_key is None and not s.ledger_key_secret:
            problems.append(
                "LEDGER_KEY_SECRET: required with STATE_BACKEND=firestore (NIK hashing key)"
            )
    return problems


def _as_env(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    env = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, Enum):
            text = str(value.value)
        elif isinstance(value, date):
            text = value.isoformat()
        elif isinstance(value, frozenset):
            text = ",".join(sorted(value))
        elif isinstance(value, BaseModel):
            continue
        else:
            text = str(value)
        env[f"{prefix}{name}".upper()] = text
    return env
