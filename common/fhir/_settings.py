from __future__ import annotations

from dataclasses import dataclass, field

TRANSPORTS = ("aiohttp", "httpx")


@dataclass(frozen=True, slots=True)
class FhirSettings:
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 64
    rate_limit: float = 200.0  # requests/s; 0 = unlimited
    timeout_seconds: float = 15.0
    deadline_seconds: float = 600.0  # how long a down server is waited for
    max_attempts: int = 6
    backoff_base_seconds: float = 0.25
    backoff_cap_seconds: float = 20.0
    breaker_failure_threshold: int = 20  # consecutive transient failures that open the breaker
    breaker_probe_seconds: float = 2.0
    transport: str = "aiohttp"

    def __post_init__(self) -> None:
        problems = []
        if not self.base_url.startswith(("http://", "https://")):
            problems.append("base_url must start with http:// or https://")
        for name in ("concurrency", "max_attempts", "breaker_failure_threshold"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in (
            "timeout_seconds",
            "deadline_seconds",
            "backoff_cap_seconds",
            "breaker_probe_seconds",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be greater than 0")
        if self.rate_limit < 0 or self.backoff_base_seconds < 0:
            problems.append("rate_limit and backoff_base_seconds must not be negative")
        if self.transport not in TRANSPORTS:
            problems.append(f"transport must be one of {TRANSPORTS}")
        if problems:
            raise ValueError("invalid FHIR settings: " + "; ".join(problems))
