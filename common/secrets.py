"""Secrets from Secret Manager, read at start so a rotated value needs no redeploy."""

from __future__ import annotations

from common.cloud_access import open_google_client
from common.errors import ConfigError


def read_secret(name: str) -> bytes:
    """The ``latest`` version of ``projects/P/secrets/S`` (or the exact version given)."""
    from google.cloud import secretmanager

    version = name if "/versions/" in name else f"{name}/versions/latest"
    client = open_google_client("Secret Manager", secretmanager.SecretManagerServiceClient)
    try:
        response = client.access_secret_version(name=version)
    except Exception as exc:  # the client raises many google.api_core types; report them alike
        raise ConfigError(f"cannot read secret {name}: {type(exc).__name__}: {exc}") from None
    return bytes(response.payload.data)
