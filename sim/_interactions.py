"""The simulator's FHIR interactions, shared by plain HTTP requests and batch Bundle entries.

Each returns an :class:`Answer` (status, body, ETag) and counts nothing: the caller decides
whether it was an HTTP request or a batch entry. Where semantics matter they follow what the
real server (Medplum's FHIR router) does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sim._state import Resource, SimState


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    etag: str | None = None


def outcome(status: int, code: str, text: str) -> Answer:
    issue = {"severity": "error", "code": code, "details": {"text": text}}
    return Answer(status, {"resourceType": "OperationOutcome", "issue": [issue]})


def etag(resource: Resource) -> str:
    return f'W/"{(resource.get("meta") or {}).get("versionId", "")}"'


def search(sim: SimState, query: Mapping[str, str], base: str) -> Answer:
    """A searchset page: ``_count`` (default ``sim.page_size``) from ``_offset``, ``next`` link."""
    system, _, value = query.get("identifier", "").partition("|")
    try:
        count = int(query.get("_count", sim.page_size))
        offset = int(query.get("_offset", 0))
    except ValueError:
        return outcome(400, "invalid", "_count and _offset must be whole numbers")
    matches = sim.search(system, value)
    page = matches[offset : offset + max(count, 0)]
    params = {"identifier": f"{system}|{value}", "_count": count}
    links = [
        {"relation": "self", "url": f"{base}/Patient?{urlencode({**params, '_offset': offset})}"}
    ]
    if count > 0 and offset + count < len(matches):
        following = urlencode({**params, "_offset": offset + count})
        links.append({"relation": "next", "url": f"{base}/Patient?{following}"})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(matches),
        "link": links,
    }
    if page:
        bundle["entry"] = [{"resource": m, "search": {"mode": "match"}} for m in page]
    return Answer(200, bundle)


def read(sim: SimState, pid: str) -> Answer:
    patient = sim.patient(pid)
    if patient is None:
        return outcome(404, "not-found", "no such Patient")
    return Answer(200, patient, etag(patient))


def update(sim: SimState, pid: str, body: object, if_match: str | None) -> Answer:
    """A conditional update: 400 for a bad body, 404 for an unknown id, 412 for a stale version."""
    if not isinstance(body, dict) or body.get("resourceType") != "Patient" or body.get("id") != pid:
        return outcome(400, "invalid", "body must be a Patient whose id matches the URL")
    sim.put_bodies.append(body)
    refused = sim.refused_puts.get(pid)
    if refused is not None:
        return outcome(refused, "invalid", "the server refused this Patient")
    if sim.before_put is not None:
        sim.before_put(pid, sim)
    current = sim.patient(pid)
    if current is None:
        return outcome(404, "not-found", "no such Patient (this server does not create on PUT)")
    if if_match is not None and if_match != etag(current):
        return outcome(412, "conflict", f"version conflict: current is {etag(current)}")
    stored = sim.store(pid, body)
    sim.puts_by_patient[pid] += 1
    return Answer(200, stored, etag(stored))
