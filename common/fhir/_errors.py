from __future__ import annotations

from common.errors import PhonesyncError


class FhirError(PhonesyncError):
    """Base of FHIR client errors. Messages never carry a NIK, a URL query or the API key."""


class FhirConflict(FhirError):
    """A conditional update lost a race: 412 (R4 stale If-Match) or 409 (HAPI's answer)."""


class FhirPermanentError(FhirError):
    """The server refused the request for good (4xx other than 408/429): retrying won't help."""

    def __init__(self, what: str, status: int, diagnostics: str = "") -> None:
        detail = f": {diagnostics}" if diagnostics else ""
        super().__init__(f"{what}: HTTP {status}{detail}")
        self.status = status
        self.diagnostics = diagnostics


class FhirAuthError(FhirPermanentError):
    """401/403: the x-api-key is missing, wrong or lacks permission."""


class FhirTransientError(FhirError):
    """5xx, 408, 429, timeout or connection failure that persisted through every retry."""

    def __init__(self, what: str, status: int, attempts: int) -> None:
        answer = f"HTTP {status}" if status else "no response"
        super().__init__(f"{what}: {answer} after {attempts} attempt(s)")
        self.status = status
        self.attempts = attempts


class FhirUnavailable(FhirTransientError):
    """The server has been down for longer than the deadline: give up fast on remaining rows."""
