"""``POST [base]`` with a Bundle of type ``batch``, answered the way Medplum's FHIR router does.

What is Medplum's (``@medplum/fhir-router`` ``batch.ts``), and followed here:
- each entry is processed on its own; its answer is ``response.status`` as a bare code
  (``"200"``, ``"412"``), ``response.outcome`` (an OperationOutcome, also on success),
  ``response.location`` on success, the resource in ``entry.resource``, and no ``etag``;
- entries are processed updates (and patches) first, then searches, then reads; the answers
  keep the request order;
- a PATCH entry carries its JSON Patch as a ``Binary`` (``contentType``
  application/json-patch+json, base64 ``data``) and gets its own status;
- a Bundle with no entries, of another type, or modifying one resource twice is refused whole
  with 400.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs

import orjson

from sim import _interactions as fhir
from sim._state import SimState

_ALL_OK = {
    "resourceType": "OperationOutcome",
    "id": "allok",
    "issue": [{"severity": "information", "code": "informational", "details": {"text": "All OK"}}],
}
# Medplum's processing order by interaction (updates before searches before reads).
_ORDER = {"update": 0, "patch": 0, "search": 1, "read": 2, "other": 3}


def _interaction(entry: Any) -> str:
    request = entry.get("request") if isinstance(entry, dict) else None
    if not isinstance(request, dict):
        return "other"
    path = str(request.get("url") or "").partition("?")[0].strip("/")
    method = request.get("method")
    if method == "PUT" and path.startswith("Patient/"):
        return "update"
    if method == "PATCH" and path.startswith("Patient/"):
        return "patch"
    if method == "GET" and path == "Patient":
        return "search"
    if method == "GET" and path.startswith("Patient/"):
        return "read"
    return "other"


def process_batch(sim: SimState, bundle: object, base: str) -> fhir.Answer:
    """The batch-response for ``bundle``, or a 400 refusing the whole Bundle."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return fhir.outcome(400, "invalid", "the body must be a Bundle")
    if bundle.get("type") != "batch":
        return fhir.outcome(400, "invalid", f"Unrecognized bundle type: {bundle.get('type')}")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        return fhir.outcome(400, "invalid", "Missing bundle entries")
    modified: set[str] = set()
    for entry in entries:
        if _interaction(entry) == "update":
            target = str(entry["request"]["url"]).strip("/")
            if target in modified:
                return fhir.outcome(400, "invalid", "Duplicate resource identity found in Bundle")
            modified.add(target)
    answers: list[dict[str, Any]] = [{} for _ in entries]
    for index in sorted(range(len(entries)), key=lambda i: _ORDER[_interaction(entries[i])]):
        answers[index] = _entry_response(sim, entries[index], base)
    return fhir.Answer(200, {"resourceType": "Bundle", "type": "batch-response", "entry": answers})


def _entry_response(sim: SimState, entry: Any, base: str) -> dict[str, Any]:
    kind = _interaction(entry)
    method = entry.get("request", {}).get("method", "?") if isinstance(entry, dict) else "?"
    answer = _answer(sim, entry, kind, base)
    sim.entries[f"{method} {answer.status}"] += 1
    if answer.status >= 300:
        return {"response": {"status": str(answer.status), "outcome": answer.body}}
    response: dict[str, Any] = {"status": str(answer.status), "outcome": _ALL_OK}
    if answer.body.get("resourceType") == "Patient":
        response["location"] = f"Patient/{answer.body.get('id')}"
    return {"response": response, "resource": answer.body}


def _answer(sim: SimState, entry: Any, kind: str, base: str) -> fhir.Answer:
    if sim.entry_fail_queue:
        status = sim.entry_fail_queue.pop(0)
        return fhir.outcome(status, "transient", "simulated failure of this entry")
    if kind == "other":
        return fhir.outcome(404, "not-found", "this server serves Patient search, read, update")
    request = entry["request"]
    path, _, query = str(request["url"]).strip("/").partition("?")
    if kind == "search":
        params = {k: v[0] for k, v in parse_qs(query).items()}
        return fhir.search(sim, params, base)
    pid = path.removeprefix("Patient/")
    if kind == "read":
        return fhir.read(sim, pid)
    if_match = request.get("ifMatch")
    condition = if_match if isinstance(if_match, str) else None
    if kind == "patch":
        return fhir.patch(sim, pid, _binary_patch(entry.get("resource")), condition)
    return fhir.update(sim, pid, entry.get("resource"), condition)


def _binary_patch(resource: object) -> object:
    """The JSON Patch a PATCH entry carries: a ``Binary`` of application/json-patch+json, its
    ``data`` base64 (as Medplum's router reads it); None when it carries none."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        return None
    if resource.get("contentType") != "application/json-patch+json":
        return None
    try:
        return orjson.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except (ValueError, orjson.JSONDecodeError):
        return None
