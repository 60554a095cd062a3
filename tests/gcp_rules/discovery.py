"""An object against a schema of a Google API discovery document (the ones
google-api-python-client ships), as the API's JSON mapping reads it.

Unknown fields are errors: Google's APIs reject them (``Invalid JSON payload received. Unknown
name``). int64/uint64 are strings in the JSON mapping but numbers are accepted; int32 and double
accept numbers and numeric strings; enums must name a value of the enum.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

_DURATION = re.compile(r"-?\d+(\.\d{1,9})?s")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_INTEGER = re.compile(r"-?\d+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*=*")


@cache
def document(name: str) -> dict[str, Any]:
    """A discovery document by file name, e.g. ``cloudbuild.v1``."""
    path = resources.files("googleapiclient") / "discovery_cache" / "documents" / f"{name}.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def validate(value: Any, api: str, schema: str) -> list[str]:
    """Problems of ``value`` as an instance of ``schema`` (``Build``, ``Dashboard``) of ``api``."""
    schemas = document(api)["schemas"]
    if schema not in schemas:
        raise KeyError(f"{api} has no schema {schema!r}")
    problems: list[str] = []
    _check(value, {"$ref": schema}, schemas, schema, problems)
    return problems


def _check(
    value: Any, spec: dict[str, Any], schemas: dict[str, Any], where: str, out: list[str]
) -> None:
    if "$ref" in spec:
        spec = schemas[spec["$ref"]]
    kind = spec.get("type")
    if kind == "any":
        return
    if kind == "object":
        if not isinstance(value, dict):
            out.append(f"{where}: expected an object, got {type(value).__name__}")
            return
        properties: dict[str, Any] = spec.get("properties", {})
        extra = spec.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], schemas, f"{where}.{key}", out)
            elif extra is not None:
                _check(item, extra, schemas, f"{where}[{key!r}]", out)
            else:
                out.append(f"{where}: unknown field {key!r}")
        return
    if kind == "array":
        if not isinstance(value, list):
            out.append(f"{where}: expected a list, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _check(item, spec["items"], schemas, f"{where}[{index}]", out)
        return
    problem = _scalar(value, kind, spec.get("format"), spec.get("enum"))
    if problem:
        out.append(f"{where}: {problem}")


def _scalar(value: Any, kind: str | None, fmt: str | None, enum: list[str] | None) -> str | None:
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expected a boolean, got {value!r}"
    if kind == "integer" or (kind == "string" and fmt in ("int64", "uint64")):
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and _INTEGER.fullmatch(value) is not None
        )
        return None if ok else f"expected an integer ({fmt}), got {value!r}"
    if kind == "number":
        if isinstance(value, bool):
            return f"expected a number, got {value!r}"
        if isinstance(value, int | float):
            return None
        try:
            float(value)
        except (TypeError, ValueError):
            return f"expected a number, got {value!r}"
        return None
    if kind == "string":
        if not isinstance(value, str):
            return f"expected a string, got {type(value).__name__} {value!r}"
        if enum is not None and value not in enum:
            return f"{value!r} is not one of {', '.join(enum)}"
        pattern = {"google-duration": _DURATION, "google-datetime": _DATETIME, "byte": _BASE64}
        if fmt in pattern and not pattern[fmt].fullmatch(value):
            return f"{value!r} is not a {fmt}"
        return None
    raise ValueError(f"discovery type {kind!r} is not handled: extend gcp_rules.discovery")
