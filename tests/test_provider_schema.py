"""terraform/ against the google and google-beta provider schemas (tests/provider_schema), and
the check's ability to fail: tests/fixtures/provider_schema plants one error of each kind."""

import json
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.provider_schema.check import Finding, check_folder, load_schema
from tests.provider_schema.extract import LOCK, PACKAGES

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "provider_schema"

# (address, nested block, problem) of each error planted in the fixture.
PLANTED = {
    (
        "google_cloud_run_v3_job.typo",
        "",
        'unknown resource type "google_cloud_run_v3_job" (provider google)',
    ),
    ("data.google_projekt.typo", "", 'unknown data source "google_projekt" (provider google)'),
    (
        "google_project_service_identity.ga_only",
        "",
        'unknown resource type "google_project_service_identity" (provider google)',
    ),
    ("google_pubsub_topic.unknown_argument", "", 'unknown argument "retention"'),
    ("provider.google", "", 'unknown argument "projekt"'),
    ("google_pubsub_subscription.unknown_block", "", 'unknown block "dead_letter"'),
    ("google_cloud_run_v2_job.nesting", "template.template", 'unknown block "env"'),
    (
        "google_pubsub_topic.argument_as_block",
        "",
        '"labels" is an argument, not a block: write labels = ...',
    ),
    (
        "google_pubsub_subscription.block_as_argument",
        "",
        '"retry_policy" is a block, not an argument: write retry_policy { ... }',
    ),
    ("google_pubsub_subscription.missing_argument", "", 'missing required argument "topic"'),
    (
        "google_cloud_run_v2_job.nesting",
        "template.template.containers",
        'missing required argument "image"',
    ),
    ("google_monitoring_alert_policy.missing_block", "", 'missing required block "conditions"'),
    (
        "google_pubsub_subscription.block_twice",
        "",
        'block "expiration_policy" may appear only once',
    ),
}


@pytest.fixture(scope="module")
def provider_schema() -> dict[str, Any]:
    """The extract `scripts/install-test-servers` makes with npm (tests using it are marked
    `npm`, outside the fast loop: tests/conftest.py)."""
    try:
        return load_schema()
    except FileNotFoundError as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="module")
def planted(provider_schema: dict[str, Any]) -> list[Finding]:
    return check_folder(FIXTURE, provider_schema)


def test_terraform_fits_the_provider_schema(provider_schema: dict[str, Any]) -> None:
    assert [str(finding) for finding in check_folder(ROOT / "terraform", provider_schema)] == []


@pytest.mark.parametrize("error", sorted(PLANTED), ids=lambda p: f"{p[0]}:{p[2]}")
def test_each_planted_error_is_reported(
    planted: list[Finding], error: tuple[str, str, str]
) -> None:
    found = {(f.address, f.where, f.problem): f for f in planted}
    assert error in found
    assert found[error].file == str(FIXTURE / "planted.tf")


def test_nothing_else_is_reported(planted: list[Finding]) -> None:
    """The fixture's meta-arguments, lifecycle, dynamic and timeouts blocks and aliased
    google-beta resource are accepted: only the planted errors come out."""
    assert {(f.address, f.where, f.problem) for f in planted} == PLANTED


def test_the_schema_is_the_pinned_packages_for_the_pinned_providers(
    provider_schema: dict[str, Any],
) -> None:
    """The extract comes from the lock's packages, generated from provider versions that
    terraform/versions.tf's constraints (`~> 6.0`) accept."""
    lock = json.loads(LOCK.read_text())["packages"]
    with (ROOT / "terraform" / "versions.tf").open() as handle:
        (terraform,) = hcl2.load(handle)["terraform"]
    (required,) = terraform["required_providers"]
    for local_name, package in PACKAGES.items():
        assert (
            provider_schema[local_name]["package"]
            == f"{package}@{lock[f'node_modules/{package}']['version']}"
        )
        assert required[local_name]["version"].strip('"') == "~> 6.0"
        assert provider_schema[local_name]["provider_version"].startswith("6.")
        assert len(provider_schema[local_name]["resources"]) > 1000
