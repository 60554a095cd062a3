"""Building the run's collaborators from its configuration: store, FHIR settings, ledger key.

Shared by the job's tasks, the replay function and the operator commands, so each reads the
same secrets and opens the same store the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.config import JobConfig
from common.privacy import DEVELOPMENT_LEDGER_KEY
from common.store import SqliteStore, StateStore

if TYPE_CHECKING:  # the operator commands open stores without loading the HTTP stack
    from common.fhir import FhirSettings


def open_state(
    backend: str, path: Path, project: str | None, retention_days: int = 400
) -> StateStore:
    if backend == "firestore":
        from common.store import firestore_store

        return firestore_store(str(project), retention_days=retention_days)
    return SqliteStore(path)


def open_store(config: JobConfig) -> StateStore:
    return open_state(
        config.state_backend, config.state_path, config.google_cloud_project, config.retention_days
    )


def fhir_settings(config: JobConfig) -> FhirSettings:
    """FHIR client settings; the API key or the oauth2 client secret is read from Secret Manager
    (``latest``) when named, and only for the ``FHIR_AUTH`` mode in use."""
    from common.fhir import FhirSettings

    api_key = client_secret = None
    if config.fhir_auth == "api-key":
        api_key = config.fhir_api_key or _secret_text(config.fhir_api_key_secret)
    elif config.fhir_auth == "oauth2":
        client_secret = config.fhir_client_secret or _secret_text(config.fhir_client_secret_secret)
    return FhirSettings(
        base_url=config.fhir_base_url,
        auth=config.fhir_auth,
        api_key=api_key,
        token_url=config.fhir_token_url,
        client_id=config.fhir_client_id,
        client_secret=client_secret,
        concurrency=config.fhir_concurrency,
        rate_limit=config.fhir_rate_limit,
        timeout_seconds=config.fhir_timeout_seconds,
        deadline_seconds=config.fhir_deadline_seconds,
        max_attempts=config.fhir_max_attempts,
        backoff_base_seconds=config.fhir_backoff_seconds,
    )


def _secret_text(name: str | None) -> str | None:
    if not name:
        return None
    from common.secrets import read_secret

    return read_secret(name).decode().strip()


def ledger_key(config: JobConfig) -> bytes:
    """The ledger's HMAC key: Secret Manager in production, a fixed development key locally."""
    if config.ledger_key_secret:
        from common.secrets import read_secret

        return read_secret(config.ledger_key_secret)
    if config.ledger_key:
        return config.ledger_key.encode()
    return DEVELOPMENT_LEDGER_KEY
