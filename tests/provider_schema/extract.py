"""Extract the google and google-beta provider schemas from the npm packages cdktf generated from
them (pinned in package-lock.json), once: `python3 -m tests.provider_schema.extract`.

The google provider itself cannot be downloaded here, so `terraform providers schema` cannot run.
@cdktf/provider-google is generated from that schema: each resource, data source and the
provider has a config interface in `lib/<name>/index.d.ts` whose properties are the settable
arguments (`?` when optional; computed-only attributes are left out), with nested blocks as
interfaces of their own (`X[]` when repeatable, `X` when at most one). Each property's doc links
to its Terraform name (`...#tf_name Class#tf_name`). The packages unpack to ~300 MB each, so
they are not installed: `npm pack` fetches the tarball (checked against the lock's integrity)
and only the declarations are read from it, into one compact JSON under .cache/, named by the
hash of the lock and of this file. Standard library only: runs before the venv exists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOCK = HERE / "package-lock.json"
CACHE = HERE / ".cache"
PACKAGES = {"google": "@cdktf/provider-google", "google-beta": "@cdktf/provider-google-beta"}

Schema = dict[str, Any]

_CLASS = re.compile(
    r"export declare class (\w+) extends cdktf\.(TerraformResource|TerraformDataSource|TerraformProvider) \{"
    r".*?static readonly tfResourceType = \"([\w-]+)\";"
    r".*?constructor\(scope: Construct, id: string, config\??: (\w+)\);",
    re.S,
)
_INTERFACE = re.compile(r"^export interface (\w+)(?: extends [\w.]+)? \{\n(.*?)^\}", re.S | re.M)
_PROPERTY = re.compile(
    r"(?:/\*\*((?:(?!\*/).)*)\*/\s*)?readonly (\w+)(\??): ((?:\{[^}]*\}|[^;{])*);", re.S
)
_TF_NAME = re.compile(r"#([A-Za-z0-9_]+) \w+#\1\}")
_KINDS = {"TerraformResource": "resources", "TerraformDataSource": "data_sources"}


def cache_path() -> Path:
    """The extract for this lock file and this extractor."""
    digest = hashlib.sha256(LOCK.read_bytes() + Path(__file__).read_bytes()).hexdigest()[:16]
    return CACHE / f"schema-{digest}.json"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _struct(name: str, interfaces: dict[str, str], file: str) -> Schema:
    """{"attributes": {tf_name: required}, "blocks": {tf_name: {required, max_items, schema}}}."""
    attributes: dict[str, bool] = {}
    blocks: dict[str, Any] = {}
    for doc, prop, optional, type_ in _PROPERTY.findall(interfaces[name]):
        links = _TF_NAME.findall(doc)
        tf_name = links[-1] if links else _snake(prop)
        required = optional != "?"
        nested = type_.replace("| cdktf.IResolvable", "").strip()
        many = nested.endswith("[]")
        nested = nested.removesuffix("[]")
        if nested in interfaces:
            blocks[tf_name] = {
                "required": required,
                "max_items": None if many else 1,
                "schema": _struct(nested, interfaces, file),
            }
        elif re.fullmatch(r"\w+", nested) and nested[0].isupper():
            raise ValueError(f"{file}: {name}.{prop}: type {nested} is not declared in the file")
        else:
            attributes[tf_name] = required
    return {"attributes": attributes, "blocks": blocks}


def parse_declarations(text: str, where: str, into: dict[str, Any]) -> None:
    """Add the resource, data source or provider declared in one `lib/<name>/` to `into`
    (`text`: its `index.d.ts` and, for large ones, its `index-structs/*.d.ts`)."""
    interfaces = {m.group(1): m.group(2) for m in _INTERFACE.finditer(text)}
    for _cls, base, tf_type, config in _CLASS.findall(text):
        schema = _struct(config, interfaces, where)
        if base == "TerraformProvider":
            into["provider"][tf_type] = schema
        else:
            into[_KINDS[base]][tf_type] = schema


def parse_tarball(tarball: Path) -> dict[str, Any]:
    """The provider's schemas, and the provider version cdktf generated them from."""
    texts: dict[str, list[bytes]] = {}  # bytes: as str, a non-ASCII doc would quadruple it
    version = ""
    with tarfile.open(tarball, "r|gz") as archive:
        for member in archive:
            found = re.fullmatch(
                r"package/lib/([\w-]+)/(?:index-structs/)?[\w-]+\.d\.ts", member.name
            )
            if found or member.name == "package/package.json":
                handle = archive.extractfile(member)
                assert handle is not None
                if found:
                    texts.setdefault(found.group(1), []).append(handle.read())
                else:
                    version = json.loads(handle.read())["cdktf"]["provider"]["version"]
    out: dict[str, Any] = {"provider": {}, "resources": {}, "data_sources": {}}
    for where, parts in sorted(texts.items()):
        parse_declarations(b"\n".join(parts).decode(), f"lib/{where}", out)
    out["provider_version"] = version
    return out


def _locked(package: str) -> dict[str, str]:
    entry: dict[str, str] = json.loads(LOCK.read_text())["packages"][f"node_modules/{package}"]
    return entry


def fetch(package: str, into: Path) -> Path:
    """`npm pack` the locked version; refuse a tarball whose hash is not the lock's."""
    locked = _locked(package)
    subprocess.run(
        [
            "npm",
            "pack",
            "--silent",
            "--pack-destination",
            str(into),
            f"{package}@{locked['version']}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (tarball,) = into.glob("*.tgz")
    algorithm, want = locked["integrity"].split("-", 1)
    got = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if got != want:
        raise SystemExit(f"phonesync: {tarball.name} does not match the integrity in {LOCK}")
    return tarball


def extract() -> Path:
    """Write the cached extract unless it is there already; return its path."""
    target = cache_path()
    if target.exists():
        return target
    print(
        f"phonesync: extracting the provider schemas into {target} (once; 10-30 s)", file=sys.stderr
    )
    providers: dict[str, Any] = {}
    for local_name, package in PACKAGES.items():
        with tempfile.TemporaryDirectory() as tmp:
            providers[local_name] = parse_tarball(fetch(package, Path(tmp)))
        providers[local_name]["package"] = f"{package}@{_locked(package)['version']}"
    CACHE.mkdir(exist_ok=True)
    for old in CACHE.glob("schema-*.json"):
        old.unlink()
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(providers, separators=(",", ":"), sort_keys=True))
    partial.rename(target)
    return target


if __name__ == "__main__":
    extract()
