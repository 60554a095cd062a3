"""JSON Patch (RFC 6902) as the simulator applies it, answering as Medplum's FHIR router does.

Measured on Medplum (tests/medplum): a ``test`` that fails answers 400 "Test failed: A != B";
``replace``, ``remove`` or ``test`` of a path that is not there answers 400 "Value required at
path: /p" (``test``: "Test failed: undefined != …"); ``add`` of a member that exists replaces
it; a body that is not a list of operations answers 400 "Invalid patch body". With
``replace_only`` (a registry that takes only ``replace`` and ``test``, as SATUSEHAT is reported
to) any other op answers 400.
"""

from __future__ import annotations

from typing import Any

import orjson

from common.fhir import resolve_pointer


class PatchError(ValueError):
    """The patch cannot be applied; the message is the OperationOutcome's text (a 400)."""


def apply_patch(resource: dict[str, Any], document: object, *, replace_only: bool = False) -> Any:
    """A copy of ``resource`` with ``document`` applied; ``PatchError`` if any op fails (then
    nothing is applied)."""
    if not isinstance(document, list) or not all(isinstance(op, dict) for op in document):
        raise PatchError("Invalid patch body")
    result: Any = orjson.loads(orjson.dumps(resource))  # JSON: no entry shared by two paths
    for op in document:
        name, path = op.get("op"), op.get("path")
        if not isinstance(path, str) or (path and not path.startswith("/")):
            raise PatchError("Invalid patch body")
        if replace_only and name not in ("replace", "test"):
            raise PatchError(f"Unsupported patch operation: {name} (only replace)")
        if name == "test":
            found, value = resolve_pointer(result, path)
            if not found or value != op.get("value"):
                shown = _text(value) if found else "undefined"
                raise PatchError(f"Test failed: {shown} != {_text(op.get('value'))}")
        elif name == "add":
            result = _put(result, path, _copy(op.get("value")), insert=True)
        elif name == "replace":
            if not resolve_pointer(result, path)[0]:
                raise PatchError(f"Value required at path: {path}")
            result = _put(result, path, _copy(op.get("value")), insert=False)
        elif name == "remove":
            if not resolve_pointer(result, path)[0]:
                raise PatchError(f"Value required at path: {path}")
            parent, key = _parent(result, path)
            del parent[int(key) if isinstance(parent, list) else key]
        else:
            raise PatchError(f"Unsupported patch operation: {name}")
    return result


def _keys(path: str) -> list[str]:
    return [k.replace("~1", "/").replace("~0", "~") for k in path.removeprefix("/").split("/")]


def _parent(document: Any, path: str) -> tuple[Any, str]:
    *parents, last = _keys(path)
    found, parent = resolve_pointer(document, "".join(f"/{_escape(k)}" for k in parents))
    if not found or not isinstance(parent, dict | list):
        raise PatchError(f"Value required at path: {path}")
    return parent, last


def _put(document: Any, path: str, value: Any, *, insert: bool) -> Any:
    if path == "":
        return value
    parent, key = _parent(document, path)
    if isinstance(parent, dict):
        parent[key] = value
    elif key == "-" and insert:
        parent.append(value)
    elif key.isdigit() and int(key) <= len(parent) - (0 if insert else 1):
        if insert:
            parent.insert(int(key), value)
        else:
            parent[int(key)] = value
    else:
        raise PatchError(f"Value required at path: {path}")
    return document


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _copy(value: object) -> Any:
    return orjson.loads(orjson.dumps(value))


def _text(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
