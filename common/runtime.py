"""Building a process's collaborators from its settings: the store, the FHIR settings with their
secret read, the ledger key.

Shared by the job's tasks, the replay function and the operator commands, so each reads the
same secrets and opens the same store the same way.
"""

from __future__ import annotations

from pydantic import SecretStr

from common.config import Settings
from common.fhir._settings import FhirSettings
from common.privacy import DEVELOPMENT_LEDGER_KEY
from common.store import SqliteStore, StateStore


def open_store(settings: Settings) -> StateStore:
    if settings.state_backend == "firestore":
        from common.store import firestore_store

        return firestore_store(
            str(settings.google_cloud_project),
            retention_days=settings.retention_days,
            manifest_retention_days=settings.manifest_retention_days,
        )
    return SqliteStore(
        settings.state_path, manifest_retention_days=settings.manifest_retention_days
    )


def fhir_settings(settings: Settings) -> FhirSettings:
    """``settings.fhir`` with the secret of its ``auth`` mode in hand: the API key or the oauth2
    client secret, read from Secret Manager (``latest``) when named there."""
    fhir = settings.fhir
    if fhir.auth == "api-key" and fhir.api_key is None and fhir.api_key_secret:
        return fhir.model_copy(update={"api_key": _secret_text(fhir.api_key_secret)})
    if fhir.auth == "oauth2" and fhir.client_secret is None and fhir.client_secret_secret:
        return fhir.model_copy(update={"client_secret": _secret_text(fhir.client_secret_secret)})
    return fhir


def _secret_text(name: str) -> SecretStr:
    from common.secrets import read_secret

    return SecretStr(read_secret(name).decode().strip())


def ledger_key(settings: Settings) -> bytes:
    """The ledger's HMAC key: Secret Manager in production, a fixed development key locally."""
    if settings.ledger_key_secret:
        from common.secrets import read_secret

        return read_secret(settings.ledger_key_secret)
    if settings.ledger_key is not None:
        return settings.ledger_key.get_secret_value().encode()
    return DEVELOPMENT_LEDGER_KEY
