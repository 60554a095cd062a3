"""JSON Patch (RFC 6902) documents for the one change phonesync makes to a Patient: its telecom.

:func:`telecom_patch` turns (the Patient as read, the Patient as ``decide`` wants it) into the
operations that change only ``telecom``, each change guarded by a ``test`` of what it replaces,
so a registry that ignores ``If-Match`` still refuses a patch built on a stale read:

- the mobile entry changed in place: ``test /telecom/i`` (the whole entry as read), then
  ``replace /telecom/i/value`` (``add`` when the entry had no value);
- an entry appended: ``test /telecom`` (the array as read), then ``add /telecom/-``;
- no ``telecom`` at all: ``test /meta/versionId`` (JSON Patch cannot test that a member is
  absent; Medplum answers ``test`` of a missing path with 400), then ``add /telecom``.

``replace-only`` (``FHIR_PATCH_OPS``: SATUSEHAT is reported to take only ``replace``) expresses
the same changes with ``replace`` and ``test`` alone: an appended entry replaces the whole array
(guarded by the same ``test``); a patient without ``telecom`` cannot be given one (``replace``
needs the member to exist: Medplum answers 400 "Value required at path: /telecom"), so
:class:`FhirPatchUnexpressible` is raised and the row is an ``error`` that says so.

:func:`patch_raced` tells a patch refused because another writer changed the patient (one of
its ``test`` ops no longer holds on a fresh read) from one refused for any other reason.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from common.fhir._errors import FhirPatchUnexpressible
from common.fhir._settings import PatchOps

#: RFC 6902's media type (FHIR R4 ``patch`` with JSON Patch).
JSON_PATCH = "application/json-patch+json"

PatchOp = dict[str, Any]
Resource = dict[str, Any]

_NO_TELECOM = (
    "the patient has no telecom and FHIR_PATCH_OPS=replace-only: a JSON Patch replace cannot"
    " create /telecom (the registry would answer 400); add the number in the registry by hand,"
    " or allow add (FHIR_PATCH_OPS=add-replace) if the registry takes it"
)


def telecom_patch(
    before: Resource, after: Resource, ops: PatchOps = "add-replace"
) -> list[PatchOp]:
    """The JSON Patch that makes ``before``'s telecom ``after``'s, every change guarded.

    ``after`` must differ from ``before`` in ``telecom`` alone (``meta`` aside: the server owns
    it); anything else is a programming error (``ValueError``).
    """
    if _without(before, "telecom", "meta") != _without(after, "telecom", "meta"):
        raise ValueError("a telecom patch can only change telecom")
    new = after.get("telecom")
    if not isinstance(new, list):
        raise ValueError("the wanted Patient has no telecom array")
    old = before.get("telecom")
    if not isinstance(old, list):
        if ops == "replace-only":
            raise FhirPatchUnexpressible(_NO_TELECOM)
        version = (before.get("meta") or {}).get("versionId")
        guard = [] if version is None else [_op("test", "/meta/versionId", version)]
        return [*guard, _op("add", "/telecom", new)]
    if len(new) == len(old):
        document: list[PatchOp] = []
        for index, (was, wanted) in enumerate(zip(old, new, strict=True)):
            if was != wanted:
                document += _entry_patch(index, was, wanted, ops)
        return document
    if len(new) == len(old) + 1 and new[:-1] == old and ops == "add-replace":
        return [_op("test", "/telecom", old), _op("add", "/telecom/-", new[-1])]
    return [_op("test", "/telecom", old), _op("replace", "/telecom", new)]


def _entry_patch(index: int, was: object, wanted: object, ops: PatchOps) -> list[PatchOp]:
    path = f"/telecom/{index}"
    guard = _op("test", path, was)
    if not (isinstance(was, dict) and isinstance(wanted, dict)):
        return [guard, _op("replace", path, wanted)]
    changes: list[PatchOp] = []
    for key in sorted(set(was) | set(wanted)):
        if key in was and key in wanted:
            if was[key] != wanted[key]:
                changes.append(_op("replace", f"{path}/{_escape(key)}", wanted[key]))
        elif ops == "replace-only":
            return [guard, _op("replace", path, wanted)]  # no add or remove: the whole entry
        elif key in wanted:
            changes.append(_op("add", f"{path}/{_escape(key)}", wanted[key]))
        else:
            changes.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
    return [guard, *changes]


def patch_raced(document: list[PatchOp], fresh: Resource) -> bool:
    """Whether a ``test`` op of ``document`` fails on ``fresh`` (the patient read again after
    the registry refused the patch): another writer changed what the patch guards, so the
    refusal is a lost race (decide again), not a fault of the patch."""
    for op in document:
        if op.get("op") != "test":
            continue
        found, value = resolve_pointer(fresh, str(op.get("path", "")))
        if not found or value != op.get("value"):
            return True
    return False


def patch_body(document: list[PatchOp]) -> bytes:
    return orjson.dumps(document)


def as_binary(document: list[PatchOp]) -> Resource:
    """``document`` as a batch entry carries it: a ``Binary`` of ``application/json-patch+json``
    with the patch, base64, in ``data`` (FHIR R4 3.1.0.11.6; what Medplum's router reads)."""
    return {
        "resourceType": "Binary",
        "contentType": JSON_PATCH,
        "data": base64.b64encode(patch_body(document)).decode("ascii"),
    }


def _op(name: str, path: str, value: object) -> PatchOp:
    return {"op": name, "path": path, "value": value}


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _without(resource: Resource, *keys: str) -> Resource:
    return {k: v for k, v in resource.items() if k not in keys}


def resolve_pointer(document: object, pointer: str) -> tuple[bool, Any]:
    """RFC 6901: (found, value) of ``pointer`` in ``document``."""
    if pointer == "":
        return True, document
    current = document
    for raw in pointer.removeprefix("/").split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return False, None
    return True, current
