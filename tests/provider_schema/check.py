"""Check terraform/ against the google and google-beta provider schemas: every resource and data
source type, argument and nested block exists, required ones are present, nesting is right.

`terraform validate` would do this, but it needs the provider binary, which cannot be downloaded
here. Terraform's own meta-arguments and blocks (count, for_each, depends_on, provider,
lifecycle, provisioner, connection, dynamic) are understood, not checked against the schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

from tests.provider_schema.extract import cache_path

INSTALL_HINT = "run `bash scripts/install-test-servers` (it extracts the schema once)"

# Terraform's meta-arguments, per kind of block (https://developer.hashicorp.com/terraform/language).
META_ARGUMENTS = {
    "resource": {"count", "for_each", "depends_on", "provider"},
    "data": {"count", "for_each", "depends_on", "provider"},
    "provider": {"alias", "version"},
}
META_BLOCKS = {
    "resource": {"lifecycle", "provisioner", "connection"},
    "data": {"lifecycle"},
    "provider": set[str](),
}
# The providers this check knows, by registry source (terraform.required_providers).
SOURCES = {"hashicorp/google": "google", "hashicorp/google-beta": "google-beta"}

Schema = dict[str, Any]


@dataclass(frozen=True)
class Finding:
    file: str
    address: str  # google_pubsub_topic.failures, data.google_project.this, provider.google
    where: str  # the nested block path inside it, "" at its top
    problem: str

    def __str__(self) -> str:
        inside = f" (in {self.where})" if self.where else ""
        return f"{self.file}: {self.address}{inside}: {self.problem}"


def load_schema() -> Schema:
    path = cache_path()
    if not path.exists():
        raise FileNotFoundError(f"no extracted provider schema at {path}: {INSTALL_HINT}")
    schema: Schema = json.loads(path.read_text())
    return schema


def _unwrap(value: Any) -> str:
    """`google-beta` and `google-beta.eu` as python-hcl2 gives them (`${google-beta}`)."""
    return re.sub(r"^\$\{(.*)\}$", r"\1", str(value))


def _is_block(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get("__is_block__") for item in value)
    )


def _occurrences(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Split a block body into its arguments and its nested blocks (name -> bodies); a
    `dynamic "x"` block counts as a block x whose body is its `content`."""
    arguments: dict[str, Any] = {}
    blocks: dict[str, list[dict[str, Any]]] = {}
    for key, value in body.items():
        if key.startswith("__"):
            continue
        if key == "dynamic" and isinstance(value, list):
            for labelled in value:
                for name, dynamic in labelled.items():
                    if name.startswith("__"):
                        continue
                    content = dynamic.get("content", [{}])[0]
                    blocks.setdefault(name, []).append({**content, "__dynamic__": True})
        elif _is_block(value):
            blocks.setdefault(key, []).extend(value)
        else:
            arguments[key] = value
    return arguments, blocks


Report = Callable[[str, str], None]  # (where, problem)


def check_body(
    body: dict[str, Any], schema: Schema, report: Report, where: str = "", meta: str = ""
) -> None:
    """Report what in `body` (a resource's, data source's or provider's, or a block nested in
    one at `where`) does not fit `schema`. `meta` names the kind of top-level block, whose
    meta-arguments are Terraform's own."""
    arguments, blocks = _occurrences(body)
    attributes: dict[str, bool] = schema["attributes"]
    nested: dict[str, Any] = schema["blocks"]
    for name in arguments:
        if name in attributes or name in META_ARGUMENTS.get(meta, ()):
            continue
        if name in nested:
            report(where, f'"{name}" is a block, not an argument: write {name} {{ ... }}')
        else:
            report(where, f'unknown argument "{name}"')
    for name, bodies in blocks.items():
        if name in META_BLOCKS.get(meta, ()):
            continue
        if name in attributes:
            report(where, f'"{name}" is an argument, not a block: write {name} = ...')
            continue
        if name not in nested:
            report(where, f'unknown block "{name}"')
            continue
        block = nested[name]
        dynamic = any(item.get("__dynamic__") for item in bodies)
        if block["max_items"] == 1 and len(bodies) > 1 and not dynamic:
            report(where, f'block "{name}" may appear only once')
        for item in bodies:
            check_body(item, block["schema"], report, f"{where}.{name}" if where else name)
    for name, required in attributes.items():
        if required and name not in arguments:
            report(where, f'missing required argument "{name}"')
    for name, block in nested.items():
        if block["required"] and name not in blocks:
            report(where, f'missing required block "{name}"')


def _providers(documents: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Local provider name -> schema name, from terraform.required_providers."""
    local: dict[str, str] = {}
    for document in documents:
        for terraform in document.get("terraform", []):
            for required in terraform.get("required_providers", []):
                for name, spec in required.items():
                    if isinstance(spec, dict) and spec.get("source") in SOURCES:
                        local[name] = SOURCES[spec["source"]]
    return local


def _labelled(section: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(label, body) pairs of a list of `{label: body}` dicts, without python-hcl2's markers."""
    return [(k, v) for item in section for k, v in item.items() if not k.startswith("__")]


def check_folder(folder: Path, schema: Schema) -> list[Finding]:
    """Every finding for the *.tf files in `folder`, file by file."""
    documents: dict[Path, dict[str, Any]] = {}
    options = SerializationOptions(strip_string_quotes=True)
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            documents[path] = hcl2.load(handle, serialization_options=options)
    local = _providers(documents.values())
    findings: list[Finding] = []
    for path, document in documents.items():
        for address, body, found in _blocks(document, schema, local):
            if isinstance(found, str):
                findings.append(Finding(str(path), address, "", found))
                continue
            type_schema, meta = found

            def report(where: str, problem: str, path: Path = path, address: str = address) -> None:
                findings.append(Finding(str(path), address, where, problem))

            check_body(body, type_schema, report, meta=meta)
    return findings


def _blocks(
    document: dict[str, Any], schema: Schema, local: dict[str, str]
) -> list[tuple[str, dict[str, Any], tuple[Schema, str] | str]]:
    """(address, body, (its schema, its kind) or why there is none) for each resource, data
    source and provider block of one file. A resource's provider is its `provider` argument or,
    as Terraform infers it, its type's first word (google_x: google)."""
    out: list[tuple[str, dict[str, Any], tuple[Schema, str] | str]] = []
    for kind, section, prefix, label in (
        ("resource", "resources", "", "resource type"),
        ("data", "data_sources", "data.", "data source"),
    ):
        for type_, named in _labelled(document.get(kind, [])):
            for name, body in named.items():
                if name.startswith("__"):
                    continue
                provider = _unwrap(body.get("provider", type_.split("_")[0])).split(".")[0]
                known = schema.get(local.get(provider, provider))
                if known is None:
                    out.append(
                        (f"{prefix}{type_}.{name}", body, f"no schema for provider {provider}")
                    )
                elif type_ not in known[section]:
                    why = f'unknown {label} "{type_}" (provider {provider})'
                    out.append((f"{prefix}{type_}.{name}", body, why))
                else:
                    out.append((f"{prefix}{type_}.{name}", body, (known[section][type_], kind)))
    for provider, body in _labelled(document.get("provider", [])):
        known = schema.get(local.get(provider, provider))
        if known is None:
            out.append((f"provider.{provider}", body, "no schema for this provider"))
        else:
            (provider_schema,) = known["provider"].values()
            out.append((f"provider.{provider}", body, (provider_schema, "provider")))
    return out
