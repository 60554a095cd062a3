"""Google's rules the provider schema cannot express, and the schemas of Google's APIs, on what
we ship (terraform/, cloudbuild.yaml) — and on fixtures with one planted error of each kind,
which each check must report (tests/fixtures/google_rules/)."""

from pathlib import Path

import yaml

from common.outcomes import Status
from common.store import RunStatus
from tests.gcp_rules import cloudbuild, discovery, monitoring
from tests.gcp_rules.terraform import Config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "google_rules"
SHIPPED = Config.read(ROOT / "terraform", {"project_id": "p"})
PLANTED = Config.read(FIXTURES / "monitoring")
BUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
PLANTED_BUILD = yaml.safe_load((FIXTURES / "cloudbuild.yaml").read_text())
STATUSES = {"status": {s.value for s in Status} | {s.value for s in RunStatus}}


def test_a_promql_condition_is_its_policys_only_condition() -> None:
    assert monitoring.single_promql_condition(SHIPPED) == []
    assert monitoring.single_promql_condition(PLANTED) == [
        "alert two_conditions: a PromQL condition must be the policy's only condition, it has 2"
    ]


def test_every_promql_query_parses() -> None:
    assert len(list(monitoring.promql_queries(SHIPPED))) >= 4
    assert monitoring.promql_syntax(SHIPPED) == []
    assert monitoring.promql_syntax(PLANTED) == [
        "alert bad_syntax: PromQL does not parse (unclosed left parenthesis):"
        " sum(increase(logging_googleapis_com:user_phonesync_runs[1h]) == 0"
    ]


def test_every_metric_an_alert_or_a_tile_names_is_defined_with_its_labels() -> None:
    assert monitoring.metrics_defined(SHIPPED) == []
    assert monitoring.metrics_defined(PLANTED) == [
        "alert undefined_metric: logging.googleapis.com/user/phonesync_rowz names no"
        " google_logging_metric",
        "dashboard planted: logging.googleapis.com/user/phonesync_runs has no label outcome",
    ]


def test_promql_label_matchers_name_statuses_the_code_has() -> None:
    assert monitoring.label_values(SHIPPED, STATUSES) == []
    assert monitoring.label_values(PLANTED, STATUSES) == [
        "alert misspelt_status: logging_googleapis_com:user_phonesync_runs{status} can never be"
        " needs-action"
    ]


def test_cloud_build_substitutions_follow_cloud_builds_rules() -> None:
    assert cloudbuild.problems(BUILD) == []
    assert cloudbuild.problems(PLANTED_BUILD) == [
        "substitutions.REPO: a user substitution is named _[A-Z0-9_]+",
        "steps[1].args[1]: $bucket is neither built in nor in substitutions"
        " (a shell variable is written $${bucket})",
    ]


def test_cloudbuild_yaml_is_a_cloud_build_v1_build() -> None:
    """camelCase field names, as the Build schema and Google's build config docs spell them
    (docs/decisions.md, record 78): a snake_case field is reported like any unknown one."""
    assert discovery.validate(BUILD, "cloudbuild.v1", "Build") == []
    assert discovery.validate(PLANTED_BUILD, "cloudbuild.v1", "Build") == [
        "Build.steps[2]: unknown field 'wait_for'"
    ]


def test_the_dashboard_is_a_monitoring_v1_dashboard() -> None:
    (dashboard,) = monitoring.dashboards(SHIPPED).values()
    assert discovery.validate(dashboard, "monitoring.v1", "Dashboard") == []
    (planted,) = monitoring.dashboards(PLANTED).values()
    assert discovery.validate(planted, "monitoring.v1", "Dashboard") == [
        "Dashboard.mosaicLayout.tiles[1].widget.xyChart: unknown field 'legend'"
    ]


def test_the_schema_validator_reads_the_json_mapping_as_google_does() -> None:
    ok = {
        "timeout": "600s",
        "options": {"diskSizeGb": "100", "logging": "CLOUD_LOGGING_ONLY"},
        "steps": [{"name": "x", "allowExitCodes": [1, "2"]}],
    }
    assert discovery.validate(ok, "cloudbuild.v1", "Build") == []
    bad = {
        "timeout": "10m",
        "options": {"diskSizeGb": "lots", "logging": "CLOUD_LOGGING"},
        "steps": [{"name": 3, "allowExitCodes": "1"}],
    }
    assert discovery.validate(bad, "cloudbuild.v1", "Build") == [
        "Build.timeout: '10m' is not a google-duration",
        "Build.options.diskSizeGb: expected an integer (int64), got 'lots'",
        "Build.options.logging: 'CLOUD_LOGGING' is not one of LOGGING_UNSPECIFIED, LEGACY,"
        " GCS_ONLY, STACKDRIVER_ONLY, CLOUD_LOGGING_ONLY, NONE",
        "Build.steps[0].name: expected a string, got int 3",
        "Build.steps[0].allowExitCodes: expected a list, got str",
    ]
