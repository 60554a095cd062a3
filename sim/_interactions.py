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

from sim._patch import PatchError, apply_patch
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
    """A conditional update: 400 for a bad body, 404 for an unknown id, 412 for a stale version
    (unless ``sim.ignore_if_match``); 405 on a patch-only server."""
    if not sim.writes_update:
        return outcome(405, "not-supported", "Method not allowed: this server only patches")
    if not isinstance(body, dict) or body.get("resourceType") != "Patient" or body.get("id") != pid:
        return outcome(400, "invalid", "body must be a Patient whose id matches the URL")
    sim.put_bodies.append(body)
    current = _before_write(sim, pid)
    if isinstance(current, Answer):
        return current
    if if_match is not None and not sim.ignore_if_match and if_match != etag(current):
        return outcome(412, "conflict", f"version conflict: current is {etag(current)}")
    stored = sim.store(pid, body)
    sim.puts_by_patient[pid] += 1
    return Answer(200, stored, etag(stored))


def _before_write(sim: SimState, pid: str) -> Resource | Answer:
    """What a PUT and a PATCH of ``pid`` share before their own checks: a refusal the test set
    (``refuse_puts``), the concurrent writer (``on_before_put``), then the patient or a 404."""
    refused = sim.refused_puts.get(pid)
    if refused is not None:
        return outcome(refused, "invalid", "the server refused this Patient")
    if sim.before_put is not None:
        sim.before_put(pid, sim)
    current = sim.patient(pid)
    if current is None:
        return outcome(404, "not-found", "no such Patient (this server does not create)")
    return current


def patch(sim: SimState, pid: str, document: object, if_match: str | None) -> Answer:
    """A JSON Patch, as Medplum answers it: 404 for an unknown id, 400 with the reason for a
    patch that does not apply (a failed ``test`` among them), then 412 for a stale version
    (unless ``sim.ignore_if_match``): Medplum runs the patch before it checks If-Match."""
    if not sim.writes_patch:
        return outcome(405, "not-supported", "this server does not patch")
    current = _before_write(sim, pid)
    if isinstance(current, Answer):
        return current
    try:  # Medplum applies the patch (its test ops) before it checks If-Match
        patched = apply_patch(current, document, replace_only=sim.patch_replace_only)
    except PatchError as exc:
        return outcome(400, "invalid", str(exc))
    if if_match is not None and not sim.ignore_if_match and if_match != etag(current):
        return outcome(412, "processing", "Precondition Failed")
    if not isinstance(patched, dict) or patched.get("resourceType") != "Patient":
        return outcome(400, "invalid", "the patch must leave a Patient")
    if patched.get("id") != pid:
        return outcome(400, "invalid", "the patch must not change the id")
    stored = sim.store(pid, patched)
    sim.patches_by_patient[pid] += 1
    return Answer(200, stored, etag(stored))
