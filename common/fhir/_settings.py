"""The FHIR client's settings: the ``FHIR_*`` part of phonesync's one settings model.

:class:`FhirSettings` is a pydantic model validated on construction; ``common.config.Settings``
holds one as ``fhir`` (each field is the environment variable ``FHIR_<FIELD>``), and
``FhirClient`` takes it as it is. Secrets are ``SecretStr``: no repr, dump or log shows them.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

AuthMode = Literal["api-key", "oauth2", "google"]
Transport = Literal["aiohttp", "httpx"]
#: How a Patient is written: ``auto`` (by the CapabilityStatement), ``update`` (PUT) or ``patch``.
WriteMode = Literal["auto", "update", "patch"]
#: The JSON Patch operations the registry takes: ``add-replace`` (RFC 6902's add, replace and
#: test) or ``replace-only`` (replace and test: SATUSEHAT's reported limit).
PatchOps = Literal["add-replace", "replace-only"]
AUTH_MODES: tuple[str, ...] = get_args(AuthMode)
TRANSPORTS: tuple[str, ...] = get_args(Transport)
WRITE_MODES: tuple[str, ...] = get_args(WriteMode)
PATCH_OPS: tuple[str, ...] = get_args(PatchOps)
#: Servers cap Bundles (HAPI's default is 1,000 entries); past ~100 nothing is gained (docs/performance.md).
MAX_BATCH_SIZE = 1000


def _secret_name(value: str) -> str:
    parts = value.split("/")
    if not (len(parts) in (4, 6) and parts[0] == "projects" and parts[2] == "secrets"):
        raise ValueError("expected projects/PROJECT/secrets/NAME")
    if (len(parts) == 6 and parts[4] != "versions") or not all(parts):
        raise ValueError("expected projects/PROJECT/secrets/NAME")
    return value


def _http_url(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


#: A Secret Manager secret, by name: ``projects/P/secrets/S`` (``latest``) or a version of it.
SecretName = Annotated[str, AfterValidator(_secret_name)]
#: An http(s) URL, or "" for "not set".
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class FhirSettings(BaseModel):
    """How to reach one FHIR R4 base and how hard to push it."""

    # Unknown fields are refused: a misspelt FHIR_MAX_ATTEMPT is reported, not ignored.
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    #: The FHIR R4 base, e.g. ``https://…/fhir`` (required by every command that calls it).
    base_url: HttpUrl = ""
    #: ``api-key`` (``x-api-key``), ``oauth2`` (client credentials) or ``google`` (ADC).
    auth: AuthMode = "api-key"
    #: The ``x-api-key`` itself (local runs); production names a secret in ``api_key_secret``.
    api_key: SecretStr | None = None
    api_key_secret: SecretName | None = None
    #: oauth2: the token endpoint, the client id, and its secret (or the secret's name).
    token_url: HttpUrl | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_secret: SecretName | None = None
    #: Requests in flight at once (also the connection pool size).
    concurrency: int = Field(default=64, ge=1)
    #: Requests per second across all senders, retries included; 0 = unlimited.
    rate_limit: float = Field(default=200.0, ge=0, allow_inf_nan=False)
    #: Per phase of one request (connect, write, read, pool wait).
    timeout_seconds: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    #: How long a down server (circuit open, or only 429s) is waited for before calls fail fast.
    deadline_seconds: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    #: Tries per request, the first included (waiting out an open circuit does not use them up).
    max_attempts: int = Field(default=6, ge=1)
    #: Base of the exponential backoff (full jitter), and its cap.
    backoff_seconds: float = Field(default=0.25, ge=0, allow_inf_nan=False)
    backoff_cap_seconds: float = Field(default=20.0, gt=0, allow_inf_nan=False)
    #: Consecutive transient failures (5xx, 408, timeouts, connection errors) that open it.
    breaker_failure_threshold: int = Field(default=20, ge=1)
    #: While open, one probe request is let through this often.
    breaker_probe_seconds: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    #: "aiohttp" (httpx API on the httpx-aiohttp transport) or "httpx" (httpx's own pool).
    transport: Transport = "aiohttp"
    #: Entries per batch Bundle; 0 = one request per call; None ("auto", the default):
    #: ``DEFAULT_BATCH_SIZE`` when the server's CapabilityStatement lists batch, else 0.
    batch_size: Annotated[int, Field(ge=0, le=MAX_BATCH_SIZE)] | None = None
    #: ``auto``: PUT when the CapabilityStatement lists Patient ``update``, JSON Patch when it
    #: lists only ``patch``; ``update`` / ``patch`` force one (docs/configuration.md).
    write: WriteMode = "auto"
    #: In patch mode: ``replace-only`` expresses every change with ``replace`` (and ``test``)
    #: ops, for registries that accept no other (a patient without telecom then fails).
    patch_ops: PatchOps = "add-replace"

    @field_validator("batch_size", mode="before")
    @classmethod
    def _auto_batch_size(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("auto", ""):
            return None
        return value

    @field_validator("api_key", "client_secret")
    @classmethod
    def _one_header_line(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(c in value.get_secret_value() for c in "\r\n"):
            raise ValueError("must not contain line breaks")
        return value

    def problems(self) -> list[tuple[str, str]]:
        """What is missing for the chosen ``auth``, as (field, reason) pairs."""
        if self.auth != "oauth2":
            return []
        found = []
        if not self.token_url:
            found.append(("token_url", "required with FHIR_AUTH=oauth2 (https://…)"))
        if not self.client_id:
            found.append(("client_id", "required with FHIR_AUTH=oauth2"))
        if self.client_secret is None and not self.client_secret_secret:
            found.append(
                (
                    "client_secret_secret",
                    "required with FHIR_AUTH=oauth2 (the Secret Manager name of the client"
                    " secret; FHIR_CLIENT_SECRET for local runs)",
                )
            )
        return found
