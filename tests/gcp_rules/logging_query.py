"""Cloud Logging's query language (the subset our log-based metrics use), their extractors, and
the LogEntry Cloud Run makes of a line a container writes.

Supported: ``AND`` / ``OR`` / ``NOT`` / ``-``, juxtaposition (AND), parentheses, comparisons
``= != : > >= < <=`` of a field path (``jsonPayload.event``, ``resource.labels.job_name``,
``labels."run.googleapis.com/task_index"``) with a quoted string or a bare word; severities
compare by rank. Precedence as Google documents it: NOT, then OR, then AND (``a OR b AND c`` is
``(a OR b) AND c``). Anything else (regular expressions ``=~``, functions, global restrictions,
``*`` ...) raises :class:`QuerySyntaxError`: a new filter outside the subset fails the checks
loudly instead of passing unevaluated. ``=`` is an exact match, ``:`` a case-insensitive
substring match, ``!=`` the negation of ``=`` (so it also matches an entry without the field).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SEVERITIES = (
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
)

Entry = Mapping[str, Any]
Predicate = Callable[[Entry], bool]


class QuerySyntaxError(ValueError):
    """The filter is malformed or uses syntax this evaluator does not implement."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<op>>=|<=|!=|=~|!~|[=:<>()])
    | (?P<minus>-(?=[\w"(]))
    | (?P<word>[A-Za-z_][\w.]*(?:\."(?:[^"\\]|\\.)*"[\w.]*)*|[\w./@*+-]+)
    )""",
    re.X,
)
_COMPARATORS = ("=", "!=", ":", ">", ">=", "<", "<=")


@dataclass(frozen=True)
class _Token:
    kind: str  # string, op, minus, word
    text: str


def _tokens(query: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    query = query.rstrip()
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            raise QuerySyntaxError(f"cannot read {query[pos:]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append(_Token(kind, match.group(kind)))
        pos = match.end()
    return out


def parse(query: str) -> Predicate:
    """A predicate over LogEntry dicts; QuerySyntaxError for anything outside the subset."""
    parser = _Parser(_tokens(query))
    predicate = parser.conjunction()
    if parser.pos != len(parser.tokens):
        raise QuerySyntaxError(f"unexpected {parser.tokens[parser.pos].text!r} in {query!r}")
    return predicate


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise QuerySyntaxError("the filter ends too early")
        self.pos += 1
        return token

    def conjunction(self) -> Predicate:  # AND binds loosest
        parts = [self.disjunction()]
        while (token := self.peek()) is not None and token.text != ")":
            if token.kind == "word" and token.text == "AND":
                self.take()
            parts.append(self.disjunction())  # juxtaposition is AND too
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def disjunction(self) -> Predicate:
        parts = [self.negation()]
        while (token := self.peek()) is not None and token.kind == "word" and token.text == "OR":
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def negation(self) -> Predicate:
        token = self.peek()
        if token is not None and (token.kind == "minus" or token.text == "NOT"):
            self.take()
            inner = self.negation()
            return lambda e: not inner(e)
        return self.primary()

    def primary(self) -> Predicate:
        token = self.take()
        if token.text == "(":
            inner = self.conjunction()
            if self.take().text != ")":
                raise QuerySyntaxError("missing ')'")
            return inner
        if token.kind != "word" or token.text in ("AND", "OR", "NOT"):
            raise QuerySyntaxError(f"expected a field, got {token.text!r}")
        operator = self.take()
        if operator.kind != "op" or operator.text not in _COMPARATORS:
            raise QuerySyntaxError(
                f"{token.text} {operator.text}: only field comparisons"
                f" ({' '.join(_COMPARATORS)}) are supported, not global restrictions or regexes"
            )
        value = self.take()
        if value.kind == "string":
            literal = json.loads(value.text)
        elif value.kind == "word" and value.text != "*":
            literal = value.text
        else:
            raise QuerySyntaxError(f"{token.text}{operator.text}{value.text}: unsupported value")
        return _comparison(_path(token.text), operator.text, literal)


def _path(text: str) -> list[str]:
    parts = re.findall(r'"(?:[^"\\]|\\.)*"|[^.]+', text)
    return [json.loads(p) if p.startswith('"') else p for p in parts]


def lookup(entry: Entry, path: list[str]) -> Any:
    value: Any = entry
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _comparison(path: list[str], operator: str, literal: str) -> Predicate:
    is_severity = path == ["severity"]
    if is_severity:
        if literal.upper() not in SEVERITIES:
            raise QuerySyntaxError(f"severity {literal!r} is not a LogSeverity")
        literal = literal.upper()

    def holds(entry: Entry) -> bool:
        value = lookup(entry, path)
        if operator == "!=":
            return not equal(value)
        if value is None or isinstance(value, Mapping | list):
            return False
        if operator == "=":
            return equal(value)
        if operator == ":":
            return literal.lower() in _text(value).lower()
        left, right = ordered(value)
        return bool(
            {
                ">": left > right,
                ">=": left >= right,
                "<": left < right,
                "<=": left <= right,
            }[operator]
        )

    def equal(value: Any) -> bool:
        return value is not None and _text(value) == literal

    def ordered(value: Any) -> tuple[Any, Any]:
        if is_severity:
            return SEVERITIES.index(str(value)), SEVERITIES.index(literal)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value), float(literal)
            except ValueError:
                pass
        return _text(value), literal

    return holds


_EXTRACT = re.compile(r'\s*EXTRACT\(\s*([\w."/-]+)\s*\)\s*')
_REGEXP_EXTRACT = re.compile(r'\s*REGEXP_EXTRACT\(\s*([\w."/-]+)\s*,\s*("(?:[^"\\]|\\.)*")\s*\)\s*')


def extractor(expression: str) -> Callable[[Entry], str | None]:
    """A label or value extractor: ``EXTRACT(field)`` or ``REGEXP_EXTRACT(field, "re")`` with
    exactly one capture group. Yields the value as text (numbers as Logging prints them)."""
    if match := _EXTRACT.fullmatch(expression):
        path = _path(match.group(1))
        return lambda e: None if (v := lookup(e, path)) is None else _text(v)
    if match := _REGEXP_EXTRACT.fullmatch(expression):
        path = _path(match.group(1))
        pattern = re.compile(json.loads(match.group(2)))
        if pattern.groups != 1:
            raise QuerySyntaxError(f"{expression}: needs exactly one capture group")

        def regexp(entry: Entry) -> str | None:
            value = lookup(entry, path)
            found = None if value is None else pattern.search(_text(value))
            return None if found is None else found.group(1)

        return regexp
    raise QuerySyntaxError(f"unsupported extractor {expression!r}")


# Structured logging's special fields (cloud.google.com/logging/docs/structured-logging): they
# become LogEntry fields and leave jsonPayload. `message` stays in jsonPayload.message.
_SPECIAL = {
    "logging.googleapis.com/insertId": "insertId",
    "logging.googleapis.com/labels": "labels",
    "logging.googleapis.com/operation": "operation",
    "logging.googleapis.com/sourceLocation": "sourceLocation",
    "logging.googleapis.com/spanId": "spanId",
    "logging.googleapis.com/trace": "trace",
    "logging.googleapis.com/trace_sampled": "traceSampled",
    "httpRequest": "httpRequest",
    "time": "timestamp",
    "timestamp": "timestamp",
}


def log_entry(line: str, resource: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """The LogEntry Cloud Logging stores for one line a Cloud Run container wrote: a JSON object
    becomes jsonPayload (special fields lifted out), anything else textPayload."""
    entry: dict[str, Any] = {"resource": dict(resource), "labels": dict(labels)}
    try:
        payload = json.loads(line)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return {**entry, "severity": "DEFAULT", "textPayload": line}
    severity = str(payload.pop("severity", "DEFAULT")).upper()
    entry["severity"] = severity if severity in SEVERITIES else "DEFAULT"
    for key, field in _SPECIAL.items():
        if key in payload:
            value = payload.pop(key)
            entry[field] = {**entry["labels"], **value} if field == "labels" else value
    entry["jsonPayload"] = payload
    return entry
