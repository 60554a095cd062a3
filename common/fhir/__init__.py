"""An async FHIR R4 client for Patient search, read and conditional update."""

from common.fhir._client import FhirClient, RequestStats
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
]
