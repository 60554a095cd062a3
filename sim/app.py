"""A FHIR R4 server (Patient search/read/update) and a Sheets API ``values.get``, simulated.

Faithful where phonesync depends on it: searchset Bundles, paged like production servers
(``_count``, 20 per page by default, ``next`` links), ``versionId`` and ``ETag``, ``If-Match`` →
412, ``x-api-key`` → 401, a token bucket → 429 with ``Retry-After``, injected 500/503,
log-normal latency. Where it and a real server could differ, it follows Medplum's FHIR server
(tests/medplum): OperationOutcome text in ``details.text``, no ``fullUrl`` on search entries, no
``entry`` key in an empty searchset, case-insensitive identifier matching, server-owned
``meta``. Not a general FHIR server: no create, no history.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from common.bundle import parse_bundle, read_bundle
from sim._state import Resource, SimState

FHIR_JSON = "application/fhir+json"
#: Medplum's and HAPI's default page size.
DEFAULT_PAGE_SIZE = 20


def load_bundle_patients(path: str | Path) -> list[Resource]:
    """Patients of a bundle file in any layout ``phonesync transform`` reads."""
    return [entry["resource"] for entry in parse_bundle(read_bundle(path), str(path))]


def sheet_values_from_csv(text: str) -> list[list[str]]:
    """What the Sheets API returns for a CSV: strings, trailing empty cells and rows omitted."""
    rows = [list(r) for r in csv.reader(io.StringIO(text.lstrip("\ufeff")))]
    for row in rows:
        while row and row[-1] == "":
            row.pop()
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def _outcome(status: int, code: str, text: str, headers: dict[str, str] | None = None) -> Response:
    issue = {"severity": "error", "code": code, "details": {"text": text}}
    return _json({"resourceType": "OperationOutcome", "issue": [issue]}, status, headers)


def _etag(resource: Resource) -> str:
    return f'W/"{(resource.get("meta") or {}).get("versionId", "")}"'


def create_app(
    patients: list[Resource],
    *,
    api_key: str | None = None,
    latency_ms: float = 0.0,
    error_rate: float = 0.0,
    rate_limit: float | None = None,
    sheet_csv: str | None = None,
    seed: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Starlette:
    """The simulator as an ASGI app; its controls are ``app.state.sim`` (a :class:`SimState`)."""
    sim = SimState(
        patients,
        api_key=api_key,
        latency_ms=latency_ms,
        error_rate=error_rate,
        rate_limit=rate_limit,
        sheet_values=sheet_values_from_csv(sheet_csv) if sheet_csv is not None else None,
        seed=seed,
    )

    async def gate(request: Request, method: str) -> Response | None:
        """Auth, rate limit, outage and injected faults — in the order a real gateway applies them."""
        if sim.api_key is not None and request.headers.get("x-api-key") != sim.api_key:
            sim.requests[f"{method} 401"] += 1
            return _outcome(401, "login", "missing or invalid x-api-key")
        if sim.bucket is not None:
            wait = sim.bucket.take()
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
            return _outcome(failure, "transient", "simulated server error")
        return None

    async def search(request: Request) -> Response:
        refused = await gate(request, "GET")
        if refused:
            return refused
        system, _, value = request.query_params.get("identifier", "").partition("|")
        try:
            count = int(request.query_params.get("_count", page_size))
            offset = int(request.query_params.get("_offset", 0))
        except ValueError:
            sim.requests["GET 400"] += 1
            return _outcome(400, "invalid", "_count and _offset must be whole numbers")
        matches = sim.search(system, value)
        sim.requests["GET 200"] += 1
        page = matches[offset : offset + max(count, 0)]
        query = {"identifier": f"{system}|{value}", "_count": count}
        base = f"{str(request.base_url).rstrip('/')}/fhir/Patient"
        links = [{"relation": "self", "url": f"{base}?{urlencode({**query, '_offset': offset})}"}]
        if count > 0 and offset + count < len(matches):
            following = urlencode({**query, "_offset": offset + count})
            links.append({"relation": "next", "url": f"{base}?{following}"})
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": links,
        }
        if page:
            bundle["entry"] = [{"resource": m, "search": {"mode": "match"}} for m in page]
        return _json(bundle)

    async def read(request: Request) -> Response:
        refused = await gate(request, "GET")
        if refused:
            return refused
        patient = sim.patient(request.path_params["id"])
        if patient is None:
            sim.requests["GET 404"] += 1
            return _outcome(404, "not-found", "no such Patient")
        sim.requests["GET 200"] += 1
        return _json(patient, headers={"ETag": _etag(patient)})

    async def update(request: Request) -> Response:
        refused = await gate(request, "PUT")
        if refused:
            return refused
        pid = request.path_params["id"]
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            sim.requests["PUT 400"] += 1
            return _outcome(400, "invalid", "body is not JSON")
        if (
            not isinstance(body, dict)
            or body.get("resourceType") != "Patient"
            or body.get("id") != pid
        ):
            sim.requests["PUT 400"] += 1
            return _outcome(400, "invalid", "body must be a Patient whose id matches the URL")
        sim.put_bodies.append(body)
        if sim.before_put is not None:
            sim.before_put(pid, sim)
        current = sim.patient(pid)
        if current is None:
            sim.requests["PUT 404"] += 1
            return _outcome(
                404, "not-found", "no such Patient (this server does not create on PUT)"
            )
        if_match = request.headers.get("if-match")
        if if_match is not None and if_match != _etag(current):
            sim.requests["PUT 412"] += 1
            return _outcome(412, "conflict", f"version conflict: current is {_etag(current)}")
        stored = sim.store(pid, body)
        sim.requests["PUT 200"] += 1
        sim.puts_by_patient[pid] += 1
        return _json(stored, headers={"ETag": _etag(stored)})

    async def sheet_values(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _json({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, 401)
        if sim.sheet_fail_queue:
            status = sim.sheet_fail_queue.pop(0)
            return _json({"error": {"code": status}}, status)
        if sim.sheet_values is None:
            return _json({"error": {"code": 404, "status": "NOT_FOUND"}}, 404)
        range_ = request.path_params["range"]
        return _json({"range": range_, "majorDimension": "ROWS", "values": sim.sheet_values})

    async def stats(request: Request) -> Response:
        return _json(sim.stats())

    async def bundle(request: Request) -> Response:
        return _json(sim.bundle())

    async def down(request: Request) -> Response:
        sim.set_down(bool(orjson.loads(await request.body()).get("down")))
        return _json({"down": sim.down})

    app = Starlette(
        routes=[
            Route("/fhir/Patient", search, methods=["GET"]),
            Route("/fhir/Patient/{id}", read, methods=["GET"]),
            Route("/fhir/Patient/{id}", update, methods=["PUT"]),
            Route("/v4/spreadsheets/{sheet_id}/values/{range:path}", sheet_values, methods=["GET"]),
            Route("/_sim/stats", stats, methods=["GET"]),
            Route("/_sim/bundle", bundle, methods=["GET"]),
            Route("/_sim/down", down, methods=["POST"]),
        ]
    )
    app.state.sim = sim
    return app
