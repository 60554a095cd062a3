"""How the FHIR client proves who it is: ``FHIR_AUTH`` = ``api-key`` | ``oauth2`` | ``google``.

- ``api-key``: a static ``x-api-key`` header (the brief's registry gateway).
- ``oauth2``: OAuth 2.0 client credentials, as Indonesia's SATUSEHAT platform uses: ``POST`` the
  token URL with the client id and secret (form fields), send ``Authorization: Bearer``; the
  token is cached until shortly before its ``expires_in`` and fetched again once when the FHIR
  server answers 401 (revoked or rotated early). SATUSEHAT's token URL carries
  ``?grant_type=client_credentials``: a URL is used as given (its query kept, the grant type
  then not repeated in the form). Its documentation allows one token request per minute after
  a failed one: after any failed token request the next waits at least
  ``AFTER_FAILED_TOKEN_REQUEST`` seconds, and callers meanwhile get the failure at once.
- ``google``: Application Default Credentials (google-auth), e.g. for a Cloud Healthcare API FHIR
  store used as staging; refreshed by google-auth before expiry and once after a 401.

One token fetch at a time: concurrent requests wait for the same fetch instead of stampeding
the token endpoint. Secrets and tokens never appear in messages: errors name the operation and
status only, with the endpoint's text redacted (see :attr:`FhirAuth.secrets`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from common.fhir._errors import FhirAuthError, FhirTransientError
from common.fhir._outcome import response_text
from common.privacy import mask_digit_runs, mask_secrets
from common.retry import backoff_delay, parse_retry_after, retryable_status

if TYPE_CHECKING:
    from common.fhir._settings import FhirSettings

GOOGLE_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: A cached token is replaced this long before it expires (at most a tenth of its lifetime).
REFRESH_MARGIN_SECONDS = 60.0
_TOKEN_ATTEMPTS = 3
#: The token fetch's backoff (``common.retry.backoff_delay``): base and cap, in seconds.
_TOKEN_BACKOFF_BASE, _TOKEN_BACKOFF_CAP = 0.5, 10.0
#: SATUSEHAT: one token request per minute after a failed attempt (the backoff's floor).
AFTER_FAILED_TOKEN_REQUEST = 60.0
_WHAT = "POST token"


class FhirAuth(Protocol):
    """Headers that authenticate one FHIR request; a second chance after a 401."""

    async def headers(self) -> dict[str, str]:
        """The headers for the next request (fetching a token first if none is fresh)."""
        ...

    async def refresh(self, used: dict[str, str]) -> bool:
        """After a 401 to a request sent with ``used``: drop that credential if it is still the
        current one. True when a retry with fresh :meth:`headers` may succeed."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Values to mask in any text that could reach a log (keys, secrets, tokens)."""
        ...

    async def aclose(self) -> None: ...


def make_auth(
    settings: FhirSettings, transport: httpx.AsyncBaseTransport | None = None
) -> FhirAuth:
    """The authentication ``settings.auth`` names, with its secret in hand (see
    ``common.runtime.fhir_settings``)."""
    if settings.auth == "oauth2":
        if not (settings.token_url and settings.client_id and settings.client_secret):
            raise ValueError("oauth2 needs token_url, client_id and client_secret")
        return OAuth2ClientCredentials(
            settings.token_url,
            settings.client_id,
            settings.client_secret.get_secret_value(),
            timeout_seconds=settings.timeout_seconds,
            transport=transport,
        )
    if settings.auth == "google":
        return GoogleAuth()
    return ApiKeyAuth(settings.api_key.get_secret_value() if settings.api_key else None)


class ApiKeyAuth:
    def __init__(self, api_key: str | None) -> None:
        self._headers = {"x-api-key": api_key} if api_key else {}

    async def headers(self) -> dict[str, str]:
        return self._headers

    async def refresh(self, used: dict[str, str]) -> bool:
        return False  # a static key does not get better by asking again

    def secrets(self) -> tuple[str, ...]:
        return tuple(self._headers.values())

    async def aclose(self) -> None:
        return None


class _CachedBearer:
    """A bearer token shared by all requests, replaced under a lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._seen: list[str] = []  # every token held, for redaction
        #: The token endpoint refused our client: asking again in this run cannot help.
        self._refused: FhirAuthError | None = None

    async def headers(self) -> dict[str, str]:
        async with self._lock:
            if self._refused is not None:
                raise self._refused
            if self._token is None or self._clock() >= self._refresh_at:
                try:
                    token, lifetime = await self._fetch()
                except FhirAuthError as exc:
                    self._refused = exc
                    raise
                self._token = token
                self._seen = [*self._seen[-3:], token]
                margin = min(REFRESH_MARGIN_SECONDS, lifetime / 10)
                self._refresh_at = self._clock() + lifetime - margin
            return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self, used: dict[str, str]) -> bool:
        async with self._lock:
            if used.get("Authorization") == f"Bearer {self._token}":
                self._token = None  # another request may already have replaced it
        return True

    def secrets(self) -> tuple[str, ...]:
        return tuple(self._seen)

    async def aclose(self) -> None:
        return None

    async def _fetch(self) -> tuple[str, float]:
        raise NotImplementedError


class OAuth2ClientCredentials(_CachedBearer):
    """Client-credentials grant against ``token_url`` (form-encoded id and secret).

    A fetch that meets no answer, 408, 429 or 5xx is retried (``_TOKEN_ATTEMPTS`` in all) after
    the common jittered backoff, never sooner than ``AFTER_FAILED_TOKEN_REQUEST`` (nor than
    ``Retry-After``); a fetch that gave up is answered at once with its error until that minute
    is over, so rows waiting on a token fail fast instead of queueing a minute each. ``clock``,
    ``rng`` and ``sleep`` are the backoff's (tests pass their own).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_seconds: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(clock)
        self._url = token_url  # as given: SATUSEHAT's carries ?grant_type=client_credentials
        self._form = {"client_id": client_id, "client_secret": client_secret}
        if "grant_type" not in httpx.URL(token_url).params:
            self._form = {"grant_type": "client_credentials", **self._form}
        #: No token request before this (``clock()``): a minute after a failed one.
        self._next_request_at = float("-inf")
        #: The last fetch's failure, answered at once until ``_next_request_at``.
        self._failed: FhirTransientError | None = None
        self._secret = client_secret
        self._rng, self._sleep = rng, sleep
        self._http = httpx.AsyncClient(
            transport=transport, timeout=timeout_seconds, follow_redirects=False
        )

    def secrets(self) -> tuple[str, ...]:
        return (self._secret, *super().secrets())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _fetch(self) -> tuple[str, float]:
        if self._failed is not None and self._clock() < self._next_request_at:
            raise self._failed  # the minute after a failed request is not over
        status, detail = 0, ""
        for attempt in range(_TOKEN_ATTEMPTS):
            retry_after = 0.0
            try:
                response = await self._http.post(
                    self._url, data=self._form, headers={"Accept": "application/json"}
                )
            except httpx.RequestError as exc:
                status, detail = 0, type(exc).__name__
            else:
                status = response.status_code
                if status == 200:
                    self._failed = None
                    return _token_of(response)
                self._next_request_at = self._clock() + AFTER_FAILED_TOKEN_REQUEST
                detail = _error_text(response, self.secrets())
                if not retryable_status(status):
                    raise FhirAuthError(_WHAT, status, detail)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self._next_request_at = self._clock() + AFTER_FAILED_TOKEN_REQUEST
            if attempt + 1 < _TOKEN_ATTEMPTS:
                await self._sleep(
                    backoff_delay(
                        attempt,
                        _TOKEN_BACKOFF_BASE,
                        _TOKEN_BACKOFF_CAP,
                        floor=max(retry_after, AFTER_FAILED_TOKEN_REQUEST),
                        rng=self._rng,
                    )
                )
        self._failed = FhirTransientError(_WHAT, status, _TOKEN_ATTEMPTS, detail=detail)
        raise self._failed


class GoogleAuth(_CachedBearer):
    """Application Default Credentials (a service account on Cloud Run; any ADC file locally)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        import google.auth

        self._credentials: Any = None
        self._load = google.auth.default

    async def _fetch(self) -> tuple[str, float]:
        return await asyncio.to_thread(self._refresh_sync)

    def _refresh_sync(self) -> tuple[str, float]:
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        try:
            if self._credentials is None:
                self._credentials, _ = self._load(scopes=list(GOOGLE_SCOPES))
            self._credentials.refresh(Request())
        except google.auth.exceptions.TransportError:
            raise FhirTransientError(_WHAT, 0, 1, detail="Google token endpoint") from None
        except google.auth.exceptions.GoogleAuthError as exc:
            # Messages can quote the token endpoint's answer; mask what looks secret.
            text = mask_secrets(str(exc).splitlines()[0][:200], self.secrets())
            raise FhirAuthError(_WHAT, 0, f"{type(exc).__name__}: {text}") from None
        token = str(self._credentials.token)
        expiry = self._credentials.expiry  # naive UTC, or None
        if expiry is None:
            return token, 3600.0
        import datetime as dt

        left = (expiry - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds()
        return token, max(left, 1.0)


def _token_of(response: httpx.Response) -> tuple[str, float]:
    """``access_token`` and ``expires_in`` (SATUSEHAT sends it as a string) of a token answer."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n "):
        raise FhirAuthError(_WHAT, response.status_code, "the answer has no access_token")
    try:
        lifetime = float(body.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    return token, max(lifetime, 1.0)


def _error_text(response: httpx.Response, secrets: tuple[str, ...]) -> str:
    """What a failed token request says, masked and short: ``error`` / ``error_description`` of
    an OAuth error answer, else an OperationOutcome's text or the first line of a ``text/plain``
    body (a gateway's "Gateway Timeout")."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and (body.get("error") or body.get("error_description")):
        parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
        return mask_digit_runs(mask_secrets("; ".join(parts)[:200], secrets))
    return response_text(response.content, response.headers.get("Content-Type"), secrets)
