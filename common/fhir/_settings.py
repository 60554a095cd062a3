"""The FHIR client's settings, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from common.fhir._auth import AUTH_MODES

TRANSPORTS = ("aiohttp", "httpx")
_SECRET_FIELDS = ("api_key", "client_secret")


@dataclass(frozen=True, slots=True, repr=False)
class FhirSettings:
    """How to reach one FHIR R4 base and how hard to push it.

    ``repr()`` shows whether an API key or client secret is set, never the value.
    """

    base_url: str
    #: "api-key" (``x-api-key``), "oauth2" (client credentials) or "google" (ADC): see _auth.
    auth: str = "api-key"
    api_key: str | None = None
    #: oauth2 only: the token endpoint, the client id and its secret.
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    #: Requests in flight at once (also the connection pool size).
    concurrency: int = 64
    #: Requests per second across all senders, retries included; 0 = unlimited.
    rate_limit: float = 200.0
    #: Per phase of one request (connect, write, read, pool wait).
    timeout_seconds: float = 15.0
    #: How long a down server (circuit open) is waited for before every call fails fast.
    deadline_seconds: float = 600.0
    #: Tries per request, the first included (waiting out an open circuit does not use them up).
    max_attempts: int = 6
    backoff_base_seconds: float = 0.25
    backoff_cap_seconds: float = 20.0
    #: Consecutive transient failures (5xx, 408, timeouts, connection errors) that open it.
    breaker_failure_threshold: int = 20
    #: While open, one probe request is let through this often.
    breaker_probe_seconds: float = 2.0
    #: "aiohttp" (httpx API on the httpx-aiohttp transport) or "httpx" (httpx's own pool).
    transport: str = "aiohttp"

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            problems.append("base_url must start with http:// or https://")
        if self.api_key is not None and any(c in self.api_key for c in "\r\n"):
            problems.append("api_key must not contain line breaks")
        if self.auth not in AUTH_MODES:
            problems.append(f"auth must be one of {AUTH_MODES}, got {self.auth!r}")
        if self.auth == "oauth2":
            if not (self.token_url or "").startswith(("http://", "https://")):
                problems.append("oauth2 needs token_url starting with http:// or https://")
            if not self.client_id:
                problems.append("oauth2 needs client_id")
            if not self.client_secret:
                problems.append("oauth2 needs client_secret")
        for name in ("concurrency", "max_attempts", "breaker_failure_threshold"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be an integer of at least 1, got {value!r}")
        for name in (
            "timeout_seconds",
            "deadline_seconds",
            "backoff_cap_seconds",
            "breaker_probe_seconds",
        ):
            value = getattr(self, name)
            if not _number(value) or not value > 0:
                problems.append(f"{name} must be a finite number greater than 0, got {value!r}")
        for name in ("rate_limit", "backoff_base_seconds"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                problems.append(f"{name} must be a finite number of at least 0, got {value!r}")
        if self.transport not in TRANSPORTS:
            problems.append(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        if problems:
            raise ValueError("invalid FHIR settings: " + "; ".join(problems))

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value is not None:
                shown.append(f"{f.name}=<set>")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"FhirSettings({', '.join(shown)})"


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
