"""An async FHIR R4 client for Patient search, read and conditional update.

``FhirClient`` wraps one pooled ``httpx.AsyncClient`` (on httpx-aiohttp's transport by default)
with a shared token bucket, a circuit breaker and jittered retries; ``FhirSettings`` says how
hard to push the server; the errors sort every failure into conflict, permanent or transient.
"""

from common.fhir._client import FhirClient, RequestStats, RetryHook
from common.fhir._errors import (
    FhirAuthError,
    FhirConflict,
    FhirError,
    FhirPermanentError,
    FhirTransientError,
    FhirUnavailable,
)
from common.fhir._settings import FhirSettings

__all__ = [
    "FhirAuthError",
    "FhirClient",
    "FhirConflict",
    "FhirError",
    "FhirPermanentError",
    "FhirSettings",
    "FhirTransientError",
    "FhirUnavailable",
    "RequestStats",
    "RetryHook",
]
