"""An async FHIR R4 client for Patient search, read and conditional update or JSON Patch.

``FhirClient`` wraps one pooled ``httpx.AsyncClient`` (on httpx-aiohttp's transport by default)
with a shared token bucket, a circuit breaker and jittered retries; ``FhirSettings`` says how
hard to push the server and how to authenticate (``FhirAuth``: x-api-key, OAuth 2.0 client
credentials or Google ADC); the errors sort every failure into conflict, permanent or transient.
``BatchingRegistry`` sends the same calls in batch Bundles (``FHIR_BATCH_SIZE``).
"""

from common.fhir._auth import (
    ApiKeyAuth,
    FhirAuth,
    GoogleAuth,
    OAuth2ClientCredentials,
)
from common.fhir._batch import DEFAULT_BATCH_SIZE, BatchingRegistry
from common.fhir._capabilities import ServerCapabilities, parse_capability_statement
from common.fhir._client import BatchAnswer, FhirClient, RequestStats, RetryHook
from common.fhir._errors import (
    FhirAuthError,
    FhirBatchRefused,
    FhirConflict,
    FhirError,
    FhirPatchRefused,
    FhirPatchUnexpressible,
    FhirPermanentError,
    FhirServerUnfit,
    FhirTransientError,
    FhirUnavailable,
)
from common.fhir._patch import (
    JSON_PATCH,
    as_binary,
    patch_raced,
    resolve_pointer,
    telecom_patch,
)
from common.fhir._settings import AUTH_MODES, PATCH_OPS, WRITE_MODES, FhirSettings

__all__ = [
    "AUTH_MODES",
    "DEFAULT_BATCH_SIZE",
    "JSON_PATCH",
    "PATCH_OPS",
    "WRITE_MODES",
    "ApiKeyAuth",
    "BatchAnswer",
    "BatchingRegistry",
    "FhirAuth",
    "FhirAuthError",
    "FhirBatchRefused",
    "FhirClient",
    "FhirConflict",
    "FhirError",
    "FhirPatchRefused",
    "FhirPatchUnexpressible",
    "FhirPermanentError",
    "FhirServerUnfit",
    "FhirSettings",
    "FhirTransientError",
    "FhirUnavailable",
    "GoogleAuth",
    "OAuth2ClientCredentials",
    "RequestStats",
    "RetryHook",
    "ServerCapabilities",
    "as_binary",
    "parse_capability_statement",
    "patch_raced",
    "resolve_pointer",
    "telecom_patch",
]
