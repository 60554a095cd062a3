"""A terraform configuration as python-hcl2 reads it, and the strings Google receives from it.

Only the interpolations our monitoring uses resolve (``local.x``, ``local.map.key``, ``var.x``
from its default or the given values, ``<type>.<name>.<literal attribute>``, arithmetic on
numbers (``(var.schedule_hour + 17) % 24``), ``templatefile`` of a file with a map of those);
anything else raises, so a new expression is noticed, not guessed at.
"""

from __future__ import annotations

import ast
import operator
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^{}]*)\}")
_TEMPLATEFILE = re.compile(r'\$\{templatefile\("\$\{path\.module\}/([^"]+)", \{(.*)\}\)\}', re.S)


def clean(value: Any) -> Any:
    """python-hcl2 keeps string quotes and adds __markers__: strip both."""
    if isinstance(value, dict):
        return {
            clean(k): clean(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.startswith("__"))
        }
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(paths: Iterable[Path]) -> dict[str, list[Any]]:
    """The top-level blocks of the files, merged by kind (resource, locals, variable ...)."""
    merged: dict[str, list[Any]] = defaultdict(list)
    for path in paths:
        with path.open() as handle:
            for key, blocks in clean(hcl2.load(handle)).items():
                merged[key].extend(blocks)
    return merged


@dataclass
class Config:
    blocks: Mapping[str, list[Any]]
    module: Path  # ${path.module}
    values: Mapping[str, Any] = field(default_factory=dict)  # variables without a default

    @classmethod
    def read(cls, folder: Path, values: Mapping[str, Any] | None = None) -> Config:
        return cls(load(sorted(folder.glob("*.tf"))), folder, values or {})

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for block in self.blocks.get("resource", []):
            out.update(block.get(kind, {}))
        return out

    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for block in self.blocks.get("locals", []):
            merged.update(block)
        return merged

    def variable(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        for block in self.blocks.get("variable", []):
            if name in block and "default" in block[name]:
                return block[name]["default"]
        raise KeyError(f"var.{name} has no default and no value was given")

    def resolve(self, text: str) -> str:
        """``text`` (an HCL string) as Google receives it: interpolated and unescaped."""
        return _unescape(self._interpolate(text))

    def _interpolate(self, text: str) -> str:
        return _INTERPOLATION.sub(lambda m: self._expression(m.group(1).strip()), text)

    def _expression(self, expression: str) -> str:
        if _ARITHMETIC.fullmatch(expression) and re.search(r"[-+*/%()]", expression):
            return _hcl_text(self._arithmetic(expression))
        parts = expression.split(".")
        if len(parts) == 2 and parts[0] == "local":
            return self._interpolate(str(self.locals()[parts[1]]))
        if len(parts) == 3 and parts[0] == "local":
            table = self.locals()[parts[1]]
            if isinstance(table, dict) and isinstance(table.get(parts[2]), str | int | float):
                return self._interpolate(_hcl_text(table[parts[2]]))
        if len(parts) == 2 and parts[0] == "var":
            return _hcl_text(self.variable(parts[1]))
        if len(parts) == 3 and re.fullmatch(r"\w+", parts[2]):
            value = self.resources(parts[0]).get(parts[1], {}).get(parts[2])
            if isinstance(value, str | int | float):
                return self._interpolate(_hcl_text(value))
        raise ValueError(f"cannot resolve ${{{expression}}} offline: extend gcp_rules.terraform")

    def _arithmetic(self, expression: str) -> int | float:
        """``expression`` of numbers, references to numbers, ``+ - * / %`` and parentheses."""
        names: dict[str, int | float] = {}

        def number(match: re.Match[str]) -> str:
            text = self._expression(match.group(0))
            try:
                value: int | float = int(text)
            except ValueError:
                value = float(text)
            names[f"_{len(names)}"] = value
            return f"_{len(names) - 1}"

        tree = ast.parse(_REFERENCE_IN.sub(number, expression), mode="eval").body
        return _evaluate(tree, names)

    def templatefile(self, call: str) -> str:
        """The rendered ``templatefile("${path.module}/file", {k = expr, ...})`` call."""
        match = _TEMPLATEFILE.fullmatch(call.strip())
        if match is None:
            raise ValueError(f"not a templatefile call we can render: {call[:80]}")
        template = (self.module / match.group(1)).read_text()
        variables = {
            key.strip(): self.resolve("${" + value.strip() + "}")
            for key, value in (item.split("=", 1) for item in match.group(2).split(","))
        }

        def fill(m: re.Match[str]) -> str:
            if m.group(1) not in variables:
                raise ValueError(f"{match.group(1)} uses ${{{m.group(1)}}}, which is not passed")
            return variables[m.group(1)]

        return re.sub(r"(?<!\$)\$\{(\w+)\}", fill, template).replace("$${", "${")


_REFERENCE_IN = re.compile(r"\b(?:var|local)\.\w+(?:\.\w+)?")
_ARITHMETIC = re.compile(r"[\w.\s+*/%()-]+")
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


def _evaluate(node: ast.expr, names: Mapping[str, int | float]) -> int | float:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left, names), _evaluate(node.right, names)
        result: int | float = _OPERATORS[type(node.op)](left, right)
        return result
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, names)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    raise ValueError(f"cannot evaluate {ast.unparse(node)!r} offline: extend gcp_rules.terraform")


def _hcl_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)
