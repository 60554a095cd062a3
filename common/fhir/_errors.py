"""The FHIR client's exceptions.

Messages name the operation (``"GET Patient search"``), never a URL, a query, a NIK or the API
key: they end up in row outcomes and logs (``FhirServerUnfit`` alone names the base URL). Server
diagnostics are redacted before they are stored here (see ``_client.diagnostics``).
"""

from __future__ import annotations

from common.errors import PhonesyncError


class FhirError(PhonesyncError):
    """Base of the FHIR client's errors."""


class FhirConflict(FhirError):
    """A conditional update or patch lost a race: 412 (R4's answer to a stale If-Match) or 409
    (HAPI's).

    Never retried by the client: the caller re-reads the resource and decides again.
    """

    def __init__(self, what: str, status: int) -> None:
        super().__init__(f"{what}: {status} (the resource changed since it was read)")
        self.status = status


class FhirPermanentError(FhirError):
    """The server refused the request for good (4xx other than 408/429): retrying won't help.

    ``diagnostics`` is the text of the OperationOutcome the server sent ("" if none).
    """

    def __init__(self, what: str, status: int, diagnostics: str = "") -> None:
        detail = f": {diagnostics}" if diagnostics else ""
        super().__init__(f"{what}: {status}{detail}")
        self.status = status
        self.diagnostics = diagnostics


class FhirPatchRefused(FhirPermanentError):
    """A JSON Patch answered 400 or 422: its ``test`` ops may have failed (another writer
    changed the patient: Medplum's "Test failed: …"), or the server refused the patch itself.
    ``document`` is the patch sent; ``common.fhir.patch_raced`` tells the two apart on a fresh
    read of the patient."""

    def __init__(
        self, what: str, status: int, diagnostics: str, document: list[dict[str, object]]
    ) -> None:
        super().__init__(what, status, diagnostics)
        self.document = document


#: How a server refuses a JSON Patch it cannot apply: a failed ``test`` op (Medplum: 400
#: "Test failed: …"), a path that is not there, an op it does not take, an invalid result.
PATCH_REFUSALS = frozenset({400, 422})


def patch_refusal(
    exc: FhirPermanentError, what: str, document: list[dict[str, object]]
) -> FhirPermanentError:
    """What a PATCH answered ``exc`` raises, per request and per batch entry alike:
    ``FhirPatchRefused`` (carrying ``document``) for a refusal in ``PATCH_REFUSALS``, which
    may be a lost race; ``exc`` itself otherwise (credentials, 404, 405 …)."""
    if isinstance(exc, FhirAuthError) or exc.status not in PATCH_REFUSALS:
        return exc
    return FhirPatchRefused(what, exc.status, exc.diagnostics, document)


class FhirPatchUnexpressible(FhirError):
    """The change cannot be written with the JSON Patch operations the registry takes
    (``FHIR_PATCH_OPS=replace-only`` and a patient without telecom). Nothing was sent."""


class FhirBatchRefused(FhirPermanentError):
    """``POST [base]`` with a batch Bundle was refused (400/404/405/501), or answered with
    something other than a batch-response: this server does not do batch; send per request."""


class FhirServerUnfit(FhirPermanentError):
    """``GET [base]/metadata`` did not show a FHIR R4 server with Patient search and a way to
    write (update, or patch; ``FHIR_WRITE`` may ask for one): the
    base URL leads elsewhere (a web page, another API, another FHIR version). Retrying cannot
    help. Unlike the others, the message names the base URL (without credentials or query): it
    goes to the run's reason and the operator, never into a row's outcome."""

    def __init__(self, base_url: str, status: int, diagnostics: str) -> None:
        detail = f": {diagnostics}" if diagnostics else ""
        FhirError.__init__(
            self,
            f"FHIR_BASE_URL {base_url} is not a FHIR R4 server with Patient search and a write (update or patch)"
            f" (GET metadata: {status}{detail})",
        )
        self.status = status
        self.diagnostics = diagnostics


class FhirAuthError(FhirPermanentError):
    """401/403 (after one refresh of a bearer token), or the token endpoint refused us: the
    credentials are missing, wrong or lack permission."""


class FhirTransientError(FhirError):
    """5xx, 408, a timeout or a connection failure that persisted through every attempt; or
    429s for longer than ``deadline_seconds`` (429s use up no attempts).

    ``status`` is the last HTTP status seen, 0 when the last attempt got no response.
    """

    def __init__(self, what: str, status: int, attempts: int, *, detail: str = "") -> None:
        answer = str(status) if status else "no response"
        if detail:
            answer += f" ({detail})"
        super().__init__(f"{what}: {answer} after {attempts} attempt{'s' * (attempts != 1)}")
        self.status = status
        self.attempts = attempts


class FhirUnavailable(FhirTransientError):
    """The circuit breaker has been open longer than ``deadline_seconds``: the server is down.
    Or (``throttled``) it has answered nothing but 429 for that long.

    Raised at once for every waiting and later call of that client, so a run's remaining rows
    become ``deferred`` quickly instead of each waiting out its own retries.
    """

    def __init__(
        self,
        what: str,
        status: int,
        attempts: int,
        *,
        open_seconds: float,
        throttled: bool = False,
    ) -> None:
        why = "only 429 answers" if throttled else "circuit open"
        FhirError.__init__(
            self,
            f"{what}: FHIR server unavailable ({why} for {open_seconds:.0f} s, "
            f"past the deadline; last answer {status or 'no response'})",
        )
        self.status = status
        self.attempts = attempts
        self.open_seconds = open_seconds
