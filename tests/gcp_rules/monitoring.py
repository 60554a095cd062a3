"""Cloud Monitoring's rules that the provider schema cannot express.

- A policy with a PromQL condition has that one condition only (the API rejects more).
- Every PromQL query parses (promql-parser, the Prometheus grammar Cloud Monitoring follows).
- Every metric an alert or a dashboard tile names exists: a user log-based metric is one of our
  ``google_logging_metric`` (``logging.googleapis.com/user/<name>`` in filters,
  ``logging_googleapis_com:user_<name>`` in PromQL), with the labels it extracts; a built-in
  metric belongs to a service ``apis.tf`` enables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import promql_parser

from tests.gcp_rules.terraform import Config

USER_FILTER = "logging.googleapis.com/user/"
USER_PROMQL = "logging_googleapis_com:user_"
_METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
_METRIC_LABEL = re.compile(r"metric\.labels?\.(\w+)")


def promql_queries(config: Config) -> Iterator[tuple[str, str]]:
    """(where, query) of every PromQL an alert policy or the dashboard holds."""
    for name, policy in config.resources("google_monitoring_alert_policy").items():
        for condition in policy.get("conditions", []):
            for promql in condition.get("condition_prometheus_query_language", []):
                yield f"alert {name}", config.resolve(promql["query"])
    for name, dashboard in dashboards(config).items():
        for value in _strings(dashboard, "prometheusQuery"):
            yield f"dashboard {name}", value


def dashboards(config: Config) -> dict[str, Any]:
    """Each dashboard's JSON as the API receives it (the templatefile rendered)."""
    return {
        name: json.loads(config.templatefile(body["dashboard_json"]))
        for name, body in config.resources("google_monitoring_dashboard").items()
    }


def _strings(value: Any, key: str) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _strings(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)


def single_promql_condition(config: Config) -> list[str]:
    problems = []
    for name, policy in config.resources("google_monitoring_alert_policy").items():
        conditions = policy.get("conditions", [])
        promql = [c for c in conditions if "condition_prometheus_query_language" in c]
        if promql and len(conditions) > 1:
            problems.append(
                f"alert {name}: a PromQL condition must be the policy's only condition,"
                f" it has {len(conditions)}"
            )
    return problems


def promql_syntax(config: Config) -> list[str]:
    problems = []
    for where, query in promql_queries(config):
        try:
            promql_parser.parse(query)
        except ValueError as exc:
            problems.append(f"{where}: PromQL does not parse ({exc}): {query}")
    return problems


def _selectors(query: str) -> Iterator[promql_parser.VectorSelector]:
    """The query's vector selectors; none if it does not parse (promql_syntax says so)."""
    found: list[promql_parser.VectorSelector] = []
    try:
        parsed = promql_parser.parse(query)
    except ValueError:
        return

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(parsed, pre_visit=visit)
    yield from found


def metrics_defined(config: Config) -> list[str]:
    """Every metric named by an alert or a dashboard tile exists, with the labels used."""
    labels = {
        body["name"]: set(body.get("label_extractors", {}))
        for body in config.resources("google_logging_metric").values()
    }
    services = set(config.locals().get("services", []))  # apis.tf: for_each over them
    problems = []

    def check(where: str, metric: str, used: set[str]) -> None:
        if metric.startswith(USER_FILTER):
            name = metric.removeprefix(USER_FILTER)
        elif metric.startswith(USER_PROMQL):
            name = metric.removeprefix(USER_PROMQL)
        else:
            service = metric.split("/")[0]
            if "." in service and service not in services:
                problems.append(
                    f"{where}: {metric} belongs to {service}, which apis.tf does not enable"
                )
            return
        if name not in labels:
            problems.append(f"{where}: {metric} names no google_logging_metric")
        elif used - labels[name]:
            problems.append(
                f"{where}: {metric} has no label {', '.join(sorted(used - labels[name]))}"
            )

    for name, policy in config.resources("google_monitoring_alert_policy").items():
        for condition in policy.get("conditions", []):
            for threshold in condition.get("condition_threshold", []):
                _filter_metrics(f"alert {name}", config.resolve(threshold["filter"]), check)
    for where, query in promql_queries(config):
        for selector in _selectors(query):
            used = {m.name for m in selector.matchers.matchers if m.name != "__name__"}
            check(where, selector.name or "", used)
    for name, dashboard in dashboards(config).items():
        for spec in _objects_with(dashboard, "filter"):  # timeSeriesFilter and its kin
            groups = spec.get("aggregation", {}).get("groupByFields", [])
            grouped = {g.removeprefix("metric.label.") for g in groups if g.startswith("metric.")}
            _filter_metrics(f"dashboard {name}", spec["filter"], check, grouped)
    return problems


def _filter_metrics(where: str, text: str, check: Any, grouped: set[str] | None = None) -> None:
    types = _METRIC_TYPE.findall(text)
    if len(types) != 1:
        raise ValueError(f"{where}: expected one metric.type in {text!r}")
    check(where, types[0], set(_METRIC_LABEL.findall(text)) | (grouped or set()))


def _objects_with(value: Any, key: str) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, dict):
        if key in value:
            yield value
        for v in value.values():
            yield from _objects_with(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _objects_with(item, key)


def label_values(config: Config, allowed: Mapping[str, set[str]]) -> list[str]:
    """Label matchers of user metrics in PromQL name only values the label can take
    (``allowed``: label -> values), so a misspelt status cannot silently match nothing."""
    problems = []
    for where, query in promql_queries(config):
        for selector in _selectors(query):
            for matcher in selector.matchers.matchers:
                if matcher.name not in allowed:
                    continue
                wanted = set(matcher.value.split("|"))
                if matcher.op not in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.Re):
                    continue
                if unknown := wanted - allowed[matcher.name]:
                    problems.append(
                        f"{where}: {selector.name}{{{matcher.name}}} can never be"
                        f" {', '.join(sorted(unknown))}"
                    )
    return problems
