"""A FHIR R4 server (Patient search/read/update/patch, batch) and the Sheets API's reads,
simulated.

Faithful where phonesync depends on it: searchset Bundles, paged like production servers
(``_count``, 20 per page by default, ``next`` links), ``versionId`` and ``ETag``, ``If-Match`` →
412, batch Bundles with Medplum's per-entry answers (``sim/_batch.py``), a CapabilityStatement,
JSON Patch as Medplum applies it (``sim/_patch.py``; ``write="patch-only"``: PUT answers 405 and
the CapabilityStatement lists only ``patch``), ``x-api-key`` → 401, a token bucket → 429 with ``Retry-After``, injected 500/503, log-normal
latency (plus a cost per batch entry). Where it and a real server could differ, it follows
Medplum's FHIR server (tests/medplum): OperationOutcome text in ``details.text``, no ``fullUrl``
on search entries, no ``entry`` key in an empty searchset, case-insensitive identifier matching,
server-owned ``meta``. Not a general FHIR server: no create, no history.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from common.bundle import parse_bundle, read_bundle
from common.sheet import csv_records
from sim import _interactions as fhir
from sim import _sheets as sheets
from sim._batch import process_batch
from sim._state import Resource, SimState
from sim.sheets_tabs import split_range, tab_routes, trim_empty_ends

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
#: Medplum's and HAPI's default page size.
DEFAULT_PAGE_SIZE = 20
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def load_bundle_patients(path: str | Path) -> list[Resource]:
    """Patients of a bundle file in any layout ``phonesync transform`` reads."""
    return [entry["resource"] for entry in parse_bundle(read_bundle(path), str(path))]


def sheet_values_from_csv(text: str) -> list[list[str]]:
    """What the Sheets API returns for a CSV: strings, trailing empty cells and rows omitted."""
    return trim_empty_ends([list(r) for r in csv_records(io.StringIO(text.lstrip("\ufeff")))])


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def _outcome(status: int, code: str, text: str, headers: dict[str, str] | None = None) -> Response:
    return _json(fhir.outcome(status, code, text).body, status, headers)


#: What an API gateway in front of the server answers itself, as plain text.
GATEWAY_TEXT = {502: "Bad Gateway", 504: "Gateway Timeout"}


def _failure(status: int, server_says: Response) -> Response:
    """An injected failure: 502/504 as a gateway answers them (``text/plain``), the rest as the
    server does."""
    if status in GATEWAY_TEXT:
        return Response(GATEWAY_TEXT[status], status_code=status, media_type="text/plain")
    return server_says


def _answer(answer: fhir.Answer) -> Response:
    return _json(answer.body, answer.status, {"ETag": answer.etag} if answer.etag else None)


def capability_statement(batch: bool, *, update: bool = True, patch: bool = True) -> dict[str, Any]:
    """What the simulator serves, as a FHIR R4 CapabilityStatement (``GET [base]/metadata``)."""
    codes = ["read", *(["update"] if update else []), *(["patch"] if patch else []), "search-type"]
    patient = {
        "type": "Patient",
        "interaction": [{"code": c} for c in codes],
        "versioning": "versioned",
        "conditionalUpdate": False,
        "searchParam": [{"name": "identifier", "type": "token"}],
    }
    rest: dict[str, Any] = {"mode": "server", "resource": [patient]}
    if batch:
        rest["interaction"] = [{"code": "batch"}]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2025-09-23",
        "kind": "instance",
        "software": {"name": "phonesync fhir-sim"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [rest],
    }


def _jwt_issuer(assertion: str) -> str:
    """The ``iss`` claim of a JWT, unverified ("" if it is not one)."""
    try:
        payload = assertion.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return ""
    return str(claims.get("iss", "")) if isinstance(claims, dict) else ""


def create_app(
    patients: list[Resource],
    *,
    api_key: str | None = None,
    latency_ms: float = 0.0,
    error_rate: float = 0.0,
    rate_limit: float | None = None,
    sheet_csv: str | None = None,
    seed: int | None = None,
    batch: bool = True,
    entry_cost_ms: float = 0.0,
    rate_limit_entries: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
    oauth_client: tuple[str, str] | None = None,
    token_ttl: float = 3600.0,
    write: str = "update-and-patch",
    patch_ops: str = "add-replace",
) -> Starlette:
    """The simulator as an ASGI app; its controls are ``app.state.sim`` (a :class:`SimState`).

    With ``oauth_client`` (client id, secret) it runs in bearer mode: ``POST /oauth2/token``
    grants tokens valid ``token_ttl`` seconds (client credentials, as SATUSEHAT; or a refresh
    token, as Google's endpoint for Application Default Credentials), and every FHIR request
    needs ``Authorization: Bearer`` with a live one.
    """
    sim = SimState(
        patients,
        api_key=api_key,
        latency_ms=latency_ms,
        error_rate=error_rate,
        rate_limit=rate_limit,
        sheet_values=sheet_values_from_csv(sheet_csv) if sheet_csv is not None else None,
        seed=seed,
        batch=batch,
        entry_cost_ms=entry_cost_ms,
        rate_limit_entries=rate_limit_entries,
        page_size=page_size,
        oauth_client=oauth_client,
        token_ttl=token_ttl,
        write=write,
        patch_ops=patch_ops,
    )

    async def gate(request: Request, method: str, cost: float = 1.0) -> Response | None:
        """Auth, rate limit, outage and injected faults — in the order a real gateway applies them.

        ``cost`` is what the request takes from the rate limit (a batch's entries, when the
        limit counts them).
        """
        if sim.api_key is not None and request.headers.get("x-api-key") != sim.api_key:
            sim.requests[f"{method} 401"] += 1
            return _outcome(401, "login", "missing or invalid x-api-key")
        if sim.oauth_client is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not sim.token_valid(token.strip()):
                sim.requests[f"{method} 401"] += 1
                challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                return _outcome(401, "login", "missing, expired or revoked token", challenge)
        if sim.bucket is not None:
            wait = sim.bucket.take(cost)
            if wait > 0:
                sim.requests[f"{method} 429"] += 1
                retry_after = str(max(1, math.ceil(wait)))
                return _outcome(
                    429, "throttled", "rate limit exceeded", {"Retry-After": retry_after}
                )
        await sim.pause()
        failure = sim.injected_failure()
        if failure is not None:
            sim.requests[f"{method} {failure}"] += 1
            return _failure(failure, _outcome(failure, "transient", "simulated server error"))
        return None

    def fhir_base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/fhir"

    async def search(request: Request) -> Response:
        refused = await gate(request, "GET")
        if refused:
            return refused
        answer = fhir.search(sim, request.query_params, fhir_base(request))
        sim.requests[f"GET {answer.status}"] += 1
        return _answer(answer)

    async def read(request: Request) -> Response:
        refused = await gate(request, "GET")
        if refused:
            return refused
        answer = fhir.read(sim, request.path_params["id"])
        sim.requests[f"GET {answer.status}"] += 1
        return _answer(answer)

    async def update(request: Request) -> Response:
        refused = await gate(request, "PUT")
        if refused:
            return refused
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            sim.requests["PUT 400"] += 1
            return _outcome(400, "invalid", "body is not JSON")
        answer = fhir.update(sim, request.path_params["id"], body, request.headers.get("if-match"))
        sim.requests[f"PUT {answer.status}"] += 1
        return _answer(answer)

    async def patch(request: Request) -> Response:
        refused = await gate(request, "PATCH")
        if refused:
            return refused
        if request.headers.get("content-type", "").split(";")[0].strip() != JSON_PATCH:
            sim.requests["PATCH 415"] += 1
            return _outcome(415, "not-supported", f"Content-Type must be {JSON_PATCH}")
        try:
            document = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            document = None
        if_match = request.headers.get("if-match")
        answer = fhir.patch(sim, request.path_params["id"], document, if_match)
        sim.requests[f"PATCH {answer.status}"] += 1
        return _answer(answer)

    async def batch_bundle(request: Request) -> Response:
        if not sim.batch:  # as a server without the interaction: no such endpoint
            sim.requests["POST 404"] += 1
            return _outcome(404, "not-supported", "this server does not accept batch Bundles")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        entries = body.get("entry") if isinstance(body, dict) else None
        count = len(entries) if isinstance(entries, list) else 0
        refused = await gate(
            request, "POST", float(max(count, 1)) if sim.rate_limit_entries else 1.0
        )
        if refused:
            return refused
        if sim.entry_cost_ms > 0 and count:
            await asyncio.sleep(sim.entry_cost_ms * count / 1000)
        answer = process_batch(sim, body, fhir_base(request))
        sim.requests[f"POST {answer.status}"] += 1
        return _answer(answer)

    async def metadata(request: Request) -> Response:
        # Served without the API key (FHIR expects clients to read it first); counted apart.
        sim.requests["GET metadata"] += 1
        return _json(
            sim.capability_statement
            or capability_statement(sim.batch, update=sim.writes_update, patch=sim.writes_patch)
        )

    async def token(request: Request) -> Response:
        """OAuth 2.0 token endpoint: client credentials (form fields or HTTP Basic), as SATUSEHAT
        answers them (``expires_in`` a string); or a JWT bearer assertion, as Google's endpoint
        answers a service account's (Application Default Credentials): its ``iss`` must be the
        client id. The simulator does not check the JWT's signature."""
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        sim.token_calls.append((request.url.query, sorted(form)))
        # SATUSEHAT's token URL carries the grant type: ?grant_type=client_credentials
        grant = form.get("grant_type") or request.query_params.get("grant_type", "")
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            decoded = base64.b64decode(basic[6:]).decode(errors="replace")
            client_id, _, client_secret = decoded.partition(":")
        if grant == JWT_BEARER:
            client_id, client_secret = _jwt_issuer(form.get("assertion", "")), ""
            if sim.oauth_client is not None and client_id == sim.oauth_client[0]:
                client_secret = sim.oauth_client[1]
        elif grant != "client_credentials":
            sim.requests["POST token 400"] += 1
            return _json({"error": "unsupported_grant_type"}, 400)
        if sim.oauth_client is None or (client_id, client_secret) != sim.oauth_client:
            sim.requests["POST token 401"] += 1
            return _json({"error": "invalid_client"}, 401)
        failure = sim.injected_failure()
        if failure is not None:
            sim.requests[f"POST token {failure}"] += 1
            return _failure(failure, _json({"error": "temporarily_unavailable"}, failure))
        sim.requests["POST token 200"] += 1
        ttl = sim.token_ttl
        lifetime: float | str = str(int(ttl)) if grant == "client_credentials" else int(ttl)
        return _json(
            {"access_token": sim.issue_token(), "token_type": "Bearer", "expires_in": lifetime}
        )

    async def sheet_values(request: Request) -> Response:
        """``values.get`` of the officers' sheet (``Sheet1``) or of a tab the job wrote."""
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _json({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, 401)
        failure = sim.sheet_failure()
        if failure is not None:
            status, headers = failure
            return _json({"error": {"code": status}}, status, headers)
        range_ = request.path_params["range"]
        tab, cells = split_range(range_)
        values = sim.sheet_tabs.values(request.path_params["sheet_id"], tab)
        if values is None:  # not a tab the job wrote (the officers' report): the sheet itself
            if tab not in ("", sheets.TITLE):
                error = {"code": 400, "message": f"Unable to parse range: {range_}"}
                return _json({"error": {**error, "status": "INVALID_ARGUMENT"}}, 400)
            if sim.sheet_values is None:
                return _json({"error": {"code": 404, "status": "NOT_FOUND"}}, 404)
            values, tab = sim.sheet_values, tab or sheets.TITLE
        sim.sheet_reads.append(range_)
        try:
            return _json(sheets.values_get(values, tab, cells))
        except sheets.RangeError as exc:
            error = {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}
            return _json({"error": error}, 400)

    async def stats(request: Request) -> Response:
        return _json(sim.stats())

    async def bundle(request: Request) -> Response:
        return _json(sim.bundle())

    async def down(request: Request) -> Response:
        sim.set_down(bool(orjson.loads(await request.body()).get("down")))
        return _json({"down": sim.down})

    app = Starlette(
        routes=[
            Route("/fhir", batch_bundle, methods=["POST"]),
            Route("/fhir/metadata", metadata, methods=["GET"]),
            Route("/fhir/Patient", search, methods=["GET"]),
            Route("/fhir/Patient/{id}", read, methods=["GET"]),
            Route("/fhir/Patient/{id}", update, methods=["PUT"]),
            Route("/fhir/Patient/{id}", patch, methods=["PATCH"]),
            Route("/oauth2/token", token, methods=["POST"]),
            Route("/v4/spreadsheets/{sheet_id}/values/{range:path}", sheet_values, methods=["GET"]),
            *tab_routes(sim),
            Route("/_sim/stats", stats, methods=["GET"]),
            Route("/_sim/bundle", bundle, methods=["GET"]),
            Route("/_sim/down", down, methods=["POST"]),
        ]
    )
    app.state.sim = sim
    return app
