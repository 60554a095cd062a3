"""Contracts of the infrastructure, read from the HCL itself (the google provider cannot be
downloaded here, so `terraform validate` cannot run; these tests and `terraform fmt` can)."""

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from tests.gcp_rules.terraform import Config, clean
from tests.gcp_rules.terraform import load as load_hcl

TERRAFORM = Path(__file__).resolve().parent.parent / "terraform"
RUNBOOK = TERRAFORM.parent / "docs" / "runbook.md"
RUNBOOK_URL = "https://git.example.go.id/phonesync/-/blob/main/docs/runbook.md"


def load() -> dict[str, list[Any]]:
    return load_hcl(sorted(TERRAFORM.glob("*.tf")))


HCL = load()


def resources(kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in HCL["resource"]:
        for name, body in block.get(kind, {}).items():
            out[name] = body
    return out


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in HCL["locals"]:
        merged.update(block)
    return merged


def hcl_of(name: str) -> dict[str, dict[str, Any]]:
    """The resources of one file, by type."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for block in load_hcl([TERRAFORM / name]).get("resource", []):
        for kind, bodies in block.items():
            out[kind].update(bodies)
    return dict(out)


def all_text() -> str:
    return "\n".join(p.read_text() for p in sorted(TERRAFORM.glob("*.tf")))


SHIPPED = Config.read(TERRAFORM, {"project_id": "p", "runbook_url": RUNBOOK_URL})


def test_scheduler_runs_this_job_at_23_jakarta_with_its_own_identity() -> None:
    scheduler = resources("google_cloud_scheduler_job")["nightly"]
    assert "body" not in scheduler["http_target"][0]  # the job as deployed: `phonesync run`
    assert scheduler["schedule"] == "0 ${var.schedule_hour} * * *"
    assert SHIPPED.resolve(scheduler["schedule"]) == "0 23 * * *"
    assert scheduler["time_zone"] == "Asia/Jakarta"
    assert scheduler["paused"] == "${var.schedule_paused}"  # armed after a checked run
    target = scheduler["http_target"][0]
    assert target["http_method"] == "POST"
    assert target["uri"].startswith(
        "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/"
    )
    assert target["uri"].endswith("${google_cloud_run_v2_job.phonesync.name}:run")
    assert (
        target["oauth_token"][0]["service_account_email"]
        == "${google_service_account.scheduler.email}"
    )
    assert scheduler["retry_config"][0]["retry_count"] >= 1


def test_job_tasks_come_from_variables_and_it_runs_as_the_job_account() -> None:
    job = resources("google_cloud_run_v2_job")["phonesync"]
    template = job["template"][0]
    assert template["task_count"] == "${var.task_count}"
    assert template["parallelism"] == "${var.parallelism}"
    inner = template["template"][0]
    assert inner["service_account"] == "${google_service_account.job.email}"
    assert inner["max_retries"] == "${var.max_retries}"
    assert inner["timeout"] == "${var.task_timeout}"
    container = inner["containers"][0]
    assert (container["command"], container["args"]) == (["phonesync"], ["run"])


def test_the_weekly_reconcile_runs_the_same_job_read_only_on_sunday_at_3_jakarta() -> None:
    """An execution with overrides replaces the container's arguments (never its command), so
    the job's command is `phonesync` and its arguments `run`; the override names `reconcile`
    and no --repair. Overrides need run.jobs.runWithOverrides, granted on the job alone."""
    weekly = resources("google_cloud_scheduler_job")["reconcile"]
    nightly = resources("google_cloud_scheduler_job")["nightly"]
    assert (weekly["schedule"], weekly["time_zone"]) == ("0 3 * * 0", "Asia/Jakarta")
    target = weekly["http_target"][0]
    assert target["uri"] == nightly["http_target"][0]["uri"]
    assert target["oauth_token"] == nightly["http_target"][0]["oauth_token"]
    assert target["headers"] == {"Content-Type": "application/json"}
    body = target["body"]
    assert body.startswith("${base64encode(jsonencode(") and "containerOverrides" in body
    args = re.search(r"args\s*=\s*\[([^\]]*)\]", body)
    assert args is not None
    words = [w.strip().strip('"') for w in args.group(1).split(",")]
    assert words[0] == "reconcile" and not any("repair" in w for w in words), words
    assert "tostring(var.reconcile_days)" in body
    role = resources("google_project_iam_custom_role")["run_with_overrides"]
    assert set(role["permissions"]) == {"run.jobs.run", "run.jobs.runWithOverrides"}


def test_job_env_names_the_configuration_the_code_reads() -> None:
    from common.config import ENV_VARS

    env = locals_()["job_env"]
    assert set(env) <= set(ENV_VARS)
    for required in (
        "FHIR_BASE_URL",
        "FHIR_API_KEY_SECRET",
        "LEDGER_KEY_SECRET",
        "STATE_BACKEND",
        "FAILURE_TOPIC",
        "SHEET_ID",
        "GOOGLE_CLOUD_PROJECT",
    ):
        assert required in env
    assert env["STATE_BACKEND"] == "firestore"
    assert set(locals_()["replay_env"]) <= set(ENV_VARS)


def test_full_niks_are_kept_days_not_the_ledgers_retention() -> None:
    """The manifest (full NIKs and numbers) expires after manifest_retention_days, passed to
    the job that writes it; the failure messages a replay checks against it, on the topic and
    both subscriptions, are kept no longer (within Pub/Sub's 7 days)."""
    env = locals_()["job_env"]
    assert env["MANIFEST_RETENTION_DAYS"] == "${tostring(var.manifest_retention_days)}"
    assert env["RETENTION_DAYS"] == "${tostring(var.retention_days)}"
    days = int(SHIPPED.resolve("${var.manifest_retention_days}"))
    assert days < int(SHIPPED.resolve("${var.retention_days}")) and days <= 7
    assert locals_()["pii_message_retention"] == "${min(var.manifest_retention_days, 7) * 86400}s"
    kept = "${local.pii_message_retention}"
    assert resources("google_pubsub_topic")["failures"]["message_retention_duration"] == kept
    subscriptions = resources("google_pubsub_subscription")
    for name in ("replay", "dead_letter"):
        assert subscriptions[name]["message_retention_duration"] == kept, name


def test_messages_secrets_and_logs_are_stored_in_the_region_only() -> None:
    """Failure messages carry full NIKs: every topic persists in var.region only; every secret
    is replicated there only (automatic replication is global); the job's, the function's and
    the audit logs go to a log bucket there, and the _Default sink (global) excludes them."""
    topics = resources("google_pubsub_topic")
    assert len(topics) == 3
    for name, body in topics.items():
        (policy,) = body["message_storage_policy"]
        assert policy["allowed_persistence_regions"] == ["${var.region}"], name
    secrets = resources("google_secret_manager_secret")
    assert len(secrets) == 3
    for name, body in secrets.items():
        (replication,) = body["replication"]
        assert set(replication) == {"user_managed"}, name
        (managed,) = replication["user_managed"]
        assert [r["location"] for r in managed["replicas"]] == ["${var.region}"], name
    (bucket,) = resources("google_logging_project_bucket_config").values()
    assert (bucket["location"], bucket["retention_days"]) == (
        "${var.region}",
        "${var.log_retention_days}",
    )
    (sink,) = resources("google_logging_project_sink").values()
    assert sink["destination"] == (
        "logging.googleapis.com/${google_logging_project_bucket_config.regional.id}"
    )
    (exclusion,) = resources("google_logging_project_exclusion").values()
    assert sink["filter"] == exclusion["filter"] == "${local.regional_logs}"


def test_reads_of_firestore_and_of_secrets_are_audited() -> None:
    """Data Access audit logs: who read the manifest (Firestore; datastore.googleapis.com
    configures firestore.googleapis.com too) and who read a secret's value."""
    configs = {
        body["service"]: {c["log_type"] for c in body["audit_log_config"]}
        for body in resources("google_project_iam_audit_config").values()
    }
    assert configs == {
        "datastore.googleapis.com": {"ADMIN_READ", "DATA_READ", "DATA_WRITE"},
        "secretmanager.googleapis.com": {"ADMIN_READ", "DATA_READ"},
    }
    for body in resources("google_project_iam_audit_config").values():
        assert all("exempted_members" not in c for c in body["audit_log_config"])


def test_a_static_egress_address_exists_only_when_asked_for_and_carries_all_traffic() -> None:
    """static_egress: the job (Direct VPC egress) and the function (a connector) send all their
    traffic through a VPC whose NAT uses only the reserved address given to the registry."""
    network = hcl_of("network.tf")
    assert network and all(
        body["count"] == "${var.static_egress ? 1 : 0}"
        for bodies in network.values()
        for body in bodies.values()
    )
    assert set(network) >= {
        "google_compute_network",
        "google_compute_subnetwork",
        "google_compute_address",
        "google_compute_router",
        "google_compute_router_nat",
        "google_vpc_access_connector",
    }
    (nat,) = resources("google_compute_router_nat").values()
    assert nat["nat_ip_allocate_option"] == "MANUAL_ONLY"
    assert nat["nat_ips"] == ["${google_compute_address.egress[0].self_link}"]
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    assert {(s["name"], tuple(s["source_ip_ranges_to_nat"])) for s in nat["subnetwork"]} == {
        ("${google_compute_subnetwork.egress[0].id}", ("ALL_IP_RANGES",)),
        ("${google_compute_subnetwork.connector[0].id}", ("ALL_IP_RANGES",)),
    }
    for subnet in resources("google_compute_subnetwork").values():
        assert subnet["region"] == "${var.region}" and subnet["private_ip_google_access"] is True
    inner = resources("google_cloud_run_v2_job")["phonesync"]["template"][0]["template"][0]
    ((name, dynamic),) = (item for block in inner["dynamic"] for item in block.items())
    assert name == "vpc_access" and dynamic["for_each"] == "${var.static_egress ? [1] : []}"
    (content,) = dynamic["content"]
    assert content["egress"] == "ALL_TRAFFIC"
    assert content["network_interfaces"] == [
        {
            "network": "${google_compute_network.egress[0].id}",
            "subnetwork": "${google_compute_subnetwork.egress[0].id}",
        }
    ]
    (service,) = resources("google_cloudfunctions2_function")["replay"]["service_config"]
    assert service["vpc_connector"] == (
        "${var.static_egress ? google_vpc_access_connector.egress[0].id : null}"
    )
    assert service["vpc_connector_egress_settings"] == '${var.static_egress ? "ALL_TRAFFIC" : null}'
    egress_apis = resources("google_project_service")["egress_apis"]["for_each"]
    assert egress_apis == (
        '${var.static_egress ? toset(["compute.googleapis.com", "vpcaccess.googleapis.com"])'
        " : toset([])}"
    )
    (output,) = (b["egress_ip"] for b in HCL["output"] if "egress_ip" in b)
    assert (
        output["value"] == "${var.static_egress ? google_compute_address.egress[0].address : null}"
    )


def test_the_replay_functions_fhir_deadline_ends_before_the_function_is_killed() -> None:
    """429s use up no attempt, so FHIR_DEADLINE_SECONDS alone bounds a replay against a
    registry that only answers 429: it must end before the platform's timeout does."""
    (service,) = resources("google_cloudfunctions2_function")["replay"]["service_config"]
    deadline = float(locals_()["replay_env"]["FHIR_DEADLINE_SECONDS"])
    assert deadline + 30 <= service["timeout_seconds"]


def test_no_secret_value_in_any_env_block() -> None:
    suspicious = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD)", re.I)
    for env_name in ("job_env", "replay_env"):
        for name, value in locals_()[env_name].items():
            if suspicious.search(name) and name != "FHIR_TOKEN_URL":  # an endpoint, not a secret
                # only a reference to a Secret Manager secret's id, never a literal
                assert value.startswith("${google_secret_manager_secret.") and value.endswith(
                    ".id}"
                ), name
    assert 'FHIR_API_KEY"' not in all_text() and "FHIR_API_KEY " not in all_text()
    assert not resources("google_secret_manager_secret_version")  # values are added by operators


def test_failures_have_retries_and_a_dead_letter_policy() -> None:
    replay = resources("google_pubsub_subscription")["replay"]
    assert replay["topic"] == "${google_pubsub_topic.failures.id}"
    policy = replay["dead_letter_policy"][0]
    assert policy["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert policy["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert replay["retry_policy"][0]["minimum_backoff"]
    assert (
        replay["push_config"][0]["oidc_token"][0]["service_account_email"]
        == "${google_service_account.replay.email}"
    )
    inspect = resources("google_pubsub_subscription")["dead_letter"]
    assert inspect["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert inspect["retain_acked_messages"] is True


def grants() -> dict[str, set[tuple[str, str]]]:
    """(role, where) per service account, project-level and resource-level."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    roles = locals_()["project_roles"]
    for kind, bodies in ((k, v) for block in HCL["resource"] for k, v in block.items()):
        for body in bodies.values():
            member = body.get("member", "")
            match = re.fullmatch(
                r"serviceAccount:\$\{google_service_account\.(\w+)\.email\}", member
            )
            if not match:
                continue
            account = match.group(1)
            if kind == "google_project_iam_member":
                assert (
                    body["role"] == "${each.key}"
                    and body["for_each"] == f"${{toset(local.project_roles.{account})}}"
                )
                found[account] |= {(role, "project") for role in roles[account]}
            else:
                target = next(
                    v
                    for k, v in body.items()
                    if k
                    in (
                        "secret_id",
                        "topic",
                        "name",
                        "service",
                        "subscription",
                        "repository",
                        "bucket",
                        "service_account_id",
                        "cloud_function",
                    )
                )
                found[account].add((body["role"], target))
    return found


def test_each_service_account_has_exactly_its_roles() -> None:
    fhir_key = "${google_secret_manager_secret.fhir_api_key.id}"
    ledger_key = "${google_secret_manager_secret.ledger_hmac_key.id}"
    client_secret = "${google_secret_manager_secret.fhir_client_secret.id}"
    accessor = "roles/secretmanager.secretAccessor"
    assert grants() == {
        "job": {
            ("roles/datastore.user", "project"),
            ("roles/logging.logWriter", "project"),
            (accessor, fhir_key),
            (accessor, client_secret),
            (accessor, ledger_key),
            ("roles/pubsub.publisher", "${google_pubsub_topic.failures.id}"),
        },
        "scheduler": {
            ("roles/run.invoker", "${google_cloud_run_v2_job.phonesync.name}"),
            (
                "${google_project_iam_custom_role.run_with_overrides.name}",
                "${google_cloud_run_v2_job.phonesync.name}",
            ),
        },
        "replay": {
            ("roles/datastore.user", "project"),
            ("roles/logging.logWriter", "project"),
            (accessor, fhir_key),
            (accessor, client_secret),
            (accessor, ledger_key),
            (
                "roles/run.invoker",
                "${google_cloudfunctions2_function.replay.service_config[0].service}",
            ),
        },
        "build": {
            ("roles/logging.logWriter", "project"),
            ("roles/cloudfunctions.viewer", "project"),
            (
                "roles/artifactregistry.writer",
                "${google_artifact_registry_repository.images.name}",
            ),
            ("roles/storage.objectAdmin", "${google_storage_bucket.functions_source.name}"),
            ("roles/storage.objectViewer", "${var.tf_state_bucket}"),
            ("roles/run.developer", "${google_cloud_run_v2_job.phonesync.name}"),
            ("roles/cloudfunctions.developer", "${google_cloudfunctions2_function.replay.name}"),
            ("roles/iam.serviceAccountUser", "${google_service_account.job.name}"),
            ("roles/iam.serviceAccountUser", "${google_service_account.replay.name}"),
            ("roles/iam.serviceAccountUser", "${google_service_account.build.name}"),
        },
    }


#: Roles Google grants on a single resource too (a repository, a bucket, a job, a function, a
#: secret, a topic, a subscription, a service account, a log view): never at the project.
RESOURCE_SCOPED = {
    "roles/artifactregistry.reader",
    "roles/artifactregistry.writer",
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/storage.objectAdmin",
    "roles/run.invoker",
    "roles/run.developer",
    "roles/cloudfunctions.developer",
    "roles/cloudfunctions.invoker",
    "roles/secretmanager.secretAccessor",
    "roles/pubsub.publisher",
    "roles/pubsub.subscriber",
    "roles/iam.serviceAccountUser",
    "roles/iam.serviceAccountTokenCreator",
    "roles/logging.viewAccessor",
}


def test_no_project_level_role_where_a_resource_scoped_grant_exists() -> None:
    """Project-level roles are listed in two places (iam.tf's project_roles, oncall.tf's
    oncall_project_roles); none of them may be one Google also grants on the resource."""
    project = [role for roles in locals_()["project_roles"].values() for role in roles]
    oncall = re.findall(r'"(roles/[\w.]+)"', locals_()["oncall_project_roles"])
    assert project and oncall
    assert not (set(project) | set(oncall)) & RESOURCE_SCOPED
    members = [
        body
        for kind, bodies in ((k, v) for b in HCL["resource"] for k, v in b.items())
        if kind == "google_project_iam_member"
        for body in bodies.values()
    ]
    assert {body["for_each"] for body in members} == {
        "${toset(local.project_roles.job)}",
        "${toset(local.project_roles.replay)}",
        "${toset(local.project_roles.build)}",
        "${toset(local.oncall_project_roles)}",
    }


def test_every_build_runs_as_the_build_account() -> None:
    """cloudbuild.yaml names it (with the logging option a user-specified account requires),
    the function's build in terraform and the build's own deploy name it too, and the function
    is built into the job's repository, where the account may write."""
    build = yaml.safe_load((TERRAFORM.parent / "cloudbuild.yaml").read_text())
    account = "${_JOB}-build@$PROJECT_ID.iam.gserviceaccount.com"
    assert build["serviceAccount"] == f"projects/$PROJECT_ID/serviceAccounts/{account}"
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert resources("google_service_account")["build"]["account_id"] == "${var.job_name}-build"
    (config,) = resources("google_cloudfunctions2_function")["replay"]["build_config"]
    assert config["service_account"] == "${google_service_account.build.id}"
    assert config["docker_repository"] == "${google_artifact_registry_repository.images.id}"
    (deploy,) = (s for s in build["steps"] if s["id"] == "deploy-function")
    script = deploy["args"][-1]
    assert f'--build-service-account="projects/$PROJECT_ID/serviceAccounts/{account}"' in script
    assert (
        '--docker-repository="projects/$PROJECT_ID/locations/${_REGION}/repositories/${_REPO}"'
        in script
    )
    (plan,) = (s for s in build["steps"] if s["id"] == "terraform-plan")
    assert "terraform plan -input=false -lock=false -refresh=false" in plan["args"][-1]


def test_on_call_gets_what_the_runbook_asks_and_nothing_when_no_group_is_given() -> None:
    oncall = locals_()
    assert oncall["oncall"] == '${var.oncall_group == "" ? {} : {group = var.oncall_group}}'
    roles = oncall["oncall_project_roles"]
    assert roles.startswith('${var.oncall_group == "" ? [] : [')
    assert set(re.findall(r'"(roles/[\w.]+)"', roles)) == {
        "roles/logging.viewer",
        "roles/monitoring.viewer",
        "roles/datastore.viewer",
        "roles/run.viewer",
    }
    assert "google_project_iam_custom_role.scheduler_pause.name" in roles
    pause = resources("google_project_iam_custom_role")["scheduler_pause"]
    assert set(pause["permissions"]) == {
        "cloudscheduler.jobs.get",
        "cloudscheduler.jobs.list",
        "cloudscheduler.jobs.pause",
        "cloudscheduler.jobs.enable",
        "cloudscheduler.locations.list",
    }
    scoped = {
        (kind, body["role"])
        for block in HCL["resource"]
        for kind, bodies in block.items()
        for body in bodies.values()
        if body.get("member") == "${each.value}" and body.get("for_each") == "${local.oncall}"
    }
    assert scoped == {
        (
            "google_cloud_run_v2_job_iam_member",
            "${google_project_iam_custom_role.run_with_overrides.name}",
        ),
        ("google_logging_log_view_iam_member", "roles/logging.viewAccessor"),
        ("google_pubsub_topic_iam_member", "roles/pubsub.publisher"),
        ("google_pubsub_subscription_iam_member", "roles/pubsub.subscriber"),
        ("google_cloudfunctions2_function_iam_member", "roles/cloudfunctions.viewer"),
    }


def test_every_alert_policy_is_present() -> None:
    names = {body["display_name"] for body in resources("google_monitoring_alert_policy").values()}
    assert names >= {
        "phonesync: execution failed",
        "phonesync: no finished run 45 minutes after the scheduled start",
        "phonesync: error ratio above threshold",
        "phonesync: rejected rows above threshold",
        "phonesync: dead-letter backlog",
        "phonesync: FHIR 429/5xx rate high",
        "phonesync: run not finished ${var.max_run_minutes} minutes after the scheduled start",
        "phonesync: run longer than ${var.max_run_minutes} minutes",
        "phonesync: FHIR API key rotation due",
        "phonesync: reconcile found drift",
        "phonesync: no rows in the window",
        "phonesync: replay dropped malformed messages",
        "phonesync: runs left partial",
        "phonesync: scheduler could not start the job",
        "phonesync: missed night",
        "phonesync: rows waiting on an officer too long",
    }
    for body in resources("google_monitoring_alert_policy").values():
        assert body["notification_channels"] == "${var.notification_channels}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub and GitLab give a Markdown heading: lower case, punctuation but
    hyphens and underscores dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_headings() -> dict[str, str]:
    """The runbook's alert sections, by the display name they document (defaults shown)."""
    found = re.findall(r"^## (phonesync: .+)$", RUNBOOK.read_text(), re.M)
    return {heading: github_anchor(heading) for heading in found}


def test_every_alert_has_a_severity_an_auto_close_and_a_link_to_its_runbook_section() -> None:
    """Each policy says how bad it is, when it closes without data, and links the runbook
    section that tells the engineer what it means, what to do and when it is over: the link
    is runbook_url#anchor, the anchor that of the section's heading."""
    anchors = locals_()["runbook_anchor"]
    headings = runbook_headings()
    policies = resources("google_monitoring_alert_policy")
    assert set(anchors) == set(policies)
    for name, body in policies.items():
        assert body["severity"] in ("CRITICAL", "ERROR", "WARNING"), name
        (strategy,) = body["alert_strategy"]
        auto_close = SHIPPED.resolve(strategy["auto_close"])
        assert re.fullmatch(r"\d+s", auto_close) and 1800 <= int(auto_close[:-1]) <= 604800, name
        (documentation,) = body["documentation"]
        (link,) = documentation["links"]
        url = f"${{var.runbook_url}}#${{local.runbook_anchor.{name}}}"
        assert link["url"] == url and f"({url})" in documentation["content"], name
        assert documentation["mime_type"] == "text/markdown"
        shown = SHIPPED.resolve(body["display_name"])
        assert headings.get(shown) == anchors[name], (name, shown)
        assert SHIPPED.resolve(link["url"]) == f"{RUNBOOK_URL}#{anchors[name]}"
    assert github_anchor("phonesync: FHIR 429/5xx rate high") == "phonesync-fhir-4295xx-rate-high"


def test_a_nightly_page_closes_before_the_next_night_and_a_backlog_page_does_not() -> None:
    """An open incident notifies nobody again: a night's page must close before the next
    night so the same fault pages again; a backlog's stays open while the backlog lasts."""
    policies = resources("google_monitoring_alert_policy")
    backlog = {"dead_letter_backlog", "secret_rotation_due", "missed_night"}
    for name, body in policies.items():
        seconds = int(SHIPPED.resolve(body["alert_strategy"][0]["auto_close"])[:-1])
        if name in backlog:
            assert seconds == 604800, name
        else:
            assert seconds < 24 * 3600, name


def test_the_schedules_time_is_written_once() -> None:
    """scheduler.tf's cron and every time-of-day alert come from var.schedule_hour: Jakarta is
    UTC+7 all year, and PromQL's hour() is UTC."""
    text = all_text()
    code = json.dumps([HCL["resource"], HCL["locals"]])  # comments left out
    assert code.count("var.schedule_hour") == 2  # the cron and local.schedule_utc_hour
    assert locals_()["schedule_utc_hour"] == "${(var.schedule_hour + 17) % 24}"
    hours = re.findall(r"hour\(\) == ([^ )]+)", text)
    assert hours and set(hours) == {"${local.schedule_utc_hour}"}
    assert not re.search(r'"\d+ \d+ \* \* \*"', text)  # no literal cron
    for hour in range(24):
        config = Config.read(TERRAFORM, {"project_id": "p", "schedule_hour": hour})
        assert config.resolve("${local.schedule_utc_hour}") == str((hour - 7) % 24)


def test_log_metrics_read_the_fields_the_job_logs() -> None:
    metrics = resources("google_logging_metric")
    assert 'jsonPayload.event=\\"row_outcome\\"' in metrics["rows"]["filter"]
    assert metrics["rows"]["label_extractors"] == {
        "status": "EXTRACT(jsonPayload.status)",
        "source": "EXTRACT(jsonPayload.source)",
    }
    assert metrics["run_duration"]["value_extractor"] == "EXTRACT(jsonPayload.duration_seconds)"
    assert metrics["fhir_retries"]["label_extractors"] == {
        "http_status": "EXTRACT(jsonPayload.http_status)"
    }
    source = "\n".join(
        p.read_text()
        for folder in ("jobs", "common")
        for p in (TERRAFORM.parent / folder).glob("*.py")
    )
    for event in ("row_outcome", "run_finished", "fhir_retry", "lock_held"):
        assert f'"{event}"' in source


def test_firestore_has_pitr_and_ttl_on_every_collection_the_app_writes() -> None:
    (database,) = resources("google_firestore_database").values()
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"
    ttl = resources("google_firestore_field")["ttl"]
    assert ttl["field"] == "expire_at"
    assert set(re.findall(r'"(\w+)"', ttl["for_each"].replace('\\"', '"'))) == {
        "runs",
        "executions",
        "rows",
        "tasks",
        "manifest",
        "ledger",
        "sheet_reads",
        "reconciles",
        "drift",
        "waiting",
    }


def test_secret_rotation_is_scheduled_announced_and_pages_someone() -> None:
    """Pub/Sub drops messages published to a topic without subscriptions: the SECRET_ROTATE
    notice needs one that keeps it (never expiring with the 90-day period), and an alert on
    its backlog that reaches the notification channels."""
    secret = resources("google_secret_manager_secret")["fhir_api_key"]
    assert secret["rotation"][0]["rotation_period"] == "${var.secret_rotation_period}"
    assert secret["topics"][0]["name"] == "${google_pubsub_topic.secret_rotation.id}"
    (due,) = (
        (name, body)
        for name, body in resources("google_pubsub_subscription").items()
        if body["topic"] == "${google_pubsub_topic.secret_rotation.id}"
    )
    name, body = due
    assert body["filter"] == 'attributes.eventType = \\"SECRET_ROTATE\\"'
    assert body["expiration_policy"][0]["ttl"] == ""
    pages = [
        policy
        for policy in resources("google_monitoring_alert_policy").values()
        if f"google_pubsub_subscription.{name}.name" in str(policy["conditions"])
    ]
    assert len(pages) == 1 and pages[0]["notification_channels"] == "${var.notification_channels}"
    assert "num_undelivered_messages" in str(pages[0]["conditions"])


def test_dashboard_json_parses_with_its_template_variables() -> None:
    text = (TERRAFORM / "dashboards" / "phonesync.json").read_text()
    rendered = re.sub(r"\$\{(\w+)\}", "x", text)
    dashboard = json.loads(rendered)
    assert len(dashboard["mosaicLayout"]["tiles"]) >= 5
    used = set(re.findall(r"\$\{(\w+)\}", text))
    call = resources("google_monitoring_dashboard")["phonesync"]["dashboard_json"]
    assert all(name in call for name in used)


def test_variables_used_are_declared_and_tfvars_example_sets_only_those() -> None:
    declared = {name for block in HCL["variable"] for name in block}
    used = set(re.findall(r"var\.(\w+)", all_text()))
    assert used <= declared, used - declared
    example = clean(hcl2.load((TERRAFORM / "terraform.tfvars.example").open()))
    assert set(example) <= declared
    required = {
        name for block in HCL["variable"] for name, body in block.items() if "default" not in body
    }
    assert required <= set(example)


def test_terraform_fmt_is_clean(terraform: str) -> None:
    done = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_every_checkov_skip_says_why() -> None:
    skips = re.findall(r"#checkov:skip=([A-Z0-9_]+):?(.*)", all_text())
    assert skips, "expected the documented skips"
    for check, reason in skips:
        assert len(reason.split()) >= 5, f"{check} needs a real justification"


def lookback_minutes(query: str) -> int:
    (window,) = set(re.findall(r"\[(\d+[mh])\]", query))
    return int(window[:-1]) * (60 if window.endswith("h") else 1)


def test_time_of_day_alerts_look_back_to_23_00_jakarta_at_every_minute_they_check() -> None:
    """A PromQL alert active in a time slot asks "did run_finished happen tonight?": its window
    must reach back to 23:00 WIB (16:00 UTC) at the last minute checked, or a run that finished
    early looks missing and pages every night."""
    policies = resources("google_monitoring_alert_policy")
    checked = 0
    for name in ("no_finished_run", "run_not_finished"):
        for condition in policies[name]["conditions"]:
            for promql in condition.get("condition_prometheus_query_language", []):
                query = SHIPPED.resolve(promql["query"])
                assert "hour() == 16" in query, (name, query)  # 23:00 Asia/Jakarta = 16:00 UTC
                upper = re.search(r"minute\(\) < (\d+)", query)
                last_minute = int(upper.group(1)) - 1 if upper else 59
                assert lookback_minutes(query) >= last_minute + 1, (name, query)
                checked += 1
    assert checked == 2


def test_service_agents_granted_roles_are_created_first() -> None:
    """Secret Manager's service agent does not exist until generated; granting it a role on a
    fresh project would fail. Agents are therefore referenced only through
    google_project_service_identity, never spelled as service-NUMBER@gcp-sa-... strings."""
    identities = resources("google_project_service_identity")
    assert {body["service"] for body in identities.values()} == {
        "pubsub.googleapis.com",
        "secretmanager.googleapis.com",
    }
    assert all(body["provider"] == "google-beta" for body in identities.values())
    for local in ("pubsub_agent", "secret_manager_agent"):
        match = re.fullmatch(
            r"serviceAccount:\$\{google_project_service_identity\.(\w+)\.email\}", locals_()[local]
        )
        assert match and match.group(1) in identities, local
    assert "gcp-sa-" not in all_text()


@pytest.fixture
def terraform() -> str:
    """The terraform binary, or a skip naming it (a failure in CI, where it must be installed).
    Tests using it are marked `terraform` (tests/conftest.py), outside the fast loop."""
    found = shutil.which("terraform")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("terraform is not installed")
        pytest.skip("terraform is not installed: `terraform fmt` and variable validation not run")
    return found


def plan_variables(
    terraform: str, tmp_path: Path, *overrides: str
) -> subprocess.CompletedProcess[str]:
    """`terraform plan` of variables.tf alone (no provider, no network): runs its validations."""
    shutil.copy(TERRAFORM / "variables.tf", tmp_path / "variables.tf")
    shutil.copy(TERRAFORM / "terraform.tfvars.example", tmp_path / "example.tfvars")
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    if not (tmp_path / ".terraform").exists():
        subprocess.run(
            [terraform, "init", "-input=false", "-backend=false"],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
        )
    args = [terraform, "plan", "-input=false", "-no-color", "-var-file=example.tfvars"]
    args += [f"-var={o}" for o in overrides]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)


def test_variable_validations_accept_the_example_and_reject_values_google_or_alerts_cannot_take(
    terraform: str, tmp_path: Path
) -> None:
    accepted = plan_variables(terraform, tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert plan_variables(terraform, tmp_path, "max_run_minutes=44").returncode == 0
    for bad in (
        "max_run_minutes=45",  # the "run not finished" alert would never check a minute
        "max_run_minutes=0",
        "notification_channels=[]",  # alerts, the rotation reminder too, would reach no one
        "job_name=phonesync-production-sync",  # service account ids would exceed 30 characters
        "task_timeout=3000",
        "task_timeout=1500s",  # times 2 attempts: 50 minutes against a 25-minute night
        "max_retries=2",  # 750 s times 3 attempts
        "task_timeout=700s",  # no room after the 600 s FHIR deadline to defer rows
        "max_retries=11",
        "max_delivery_attempts=4",
        "secret_rotation_period=60s",
        "secret_next_rotation_time=next-year",
        "error_ratio_threshold=5",
        "ratio_min_rows=0",
        "schedule_hour=24",
        "schedule_hour=22.5",
        'quiet_weekdays=["saturday"]',
        "runbook_url=http://git.example/runbook.md",
        "runbook_url=https://git.example/runbook.md#section",
        "rejected_ratio_threshold=1",
        "reconcile_days=0",
        "reconcile_drift_threshold=-1",
        "task_count=0",
        "catch_up_days=15",  # a night's window would outgrow its memory and FHIR budget
        "action_days=0",
        "officer_wait_alert_days=0",
        "log_retention_days=0",
        'egress_cidrs={job="10.8.0.0/27",connector="10.8.1.0/28"}',
        'egress_cidrs={job="10.8.0.0/26",connector="10.8.1.0/27"}',
        'egress_cidrs={job="ten",connector="10.8.1.0/28"}',
        "oncall_group=oncall@example.org",  # a group, named as IAM names it
        "oncall_group=user:someone@example.org",
        "manifest_retention_days=0",
        "manifest_retention_days=32",
        "retention_days=2",  # below the manifest's 3 days: records outlive what they name
    ):
        done = plan_variables(terraform, tmp_path, bad)
        assert done.returncode != 0, bad
        assert "Invalid value for variable" in done.stderr, (bad, done.stderr)


def test_the_budget_validations_accept_what_fits_and_name_the_budget(
    terraform: str, tmp_path: Path
) -> None:
    """task_timeout times (max_retries + 1) within max_run_minutes, and after the FHIR deadline:
    raising one knob takes lowering or raising another."""
    for fits in (
        ("task_timeout=1500s", "max_retries=0"),
        ("task_timeout=1320s", "max_retries=1", "max_run_minutes=44"),
        ("task_timeout=300s", "fhir_deadline_seconds=180", "max_retries=4"),
    ):
        done = plan_variables(terraform, tmp_path, *fits)
        assert done.returncode == 0, (fits, done.stderr)
    done = plan_variables(terraform, tmp_path, "task_timeout=1500s")
    assert "must fit in max_run_minutes" in done.stderr
    done = plan_variables(terraform, tmp_path, "fhir_deadline_seconds=700")
    assert "at least fhir_deadline_seconds + 120 s" in done.stderr


def test_a_task_stuck_through_every_attempt_ends_within_the_nights_budget() -> None:
    """The defaults: 750 s times 2 attempts = 25 minutes = max_run_minutes, and 150 s after the
    FHIR deadline (600 s) for a task to defer its rows. A dead task's shard needs no retry: any
    live task takes it over once its lease lapses (docs/decisions.md, 80-83)."""
    timeout = int(SHIPPED.resolve("${var.task_timeout}").removesuffix("s"))
    attempts = int(SHIPPED.resolve("${var.max_retries}")) + 1
    budget = int(SHIPPED.resolve("${var.max_run_minutes}")) * 60
    assert timeout * attempts <= budget
    assert timeout >= int(SHIPPED.resolve("${var.fhir_deadline_seconds}")) + 120
    assert attempts == 2


def test_the_alert_window_and_the_max_run_minutes_validation_agree() -> None:
    (variable,) = (b["max_run_minutes"] for b in HCL["variable"] if "max_run_minutes" in b)
    condition = variable["validation"][0]["condition"]
    policy = resources("google_monitoring_alert_policy")["run_not_finished"]
    query = policy["conditions"][0]["condition_prometheus_query_language"][0]["query"]
    (upper,) = re.findall(r"minute\(\) < (\d+)", query)
    assert f"var.max_run_minutes < {upper}" in condition


def test_replay_function_takes_internal_traffic_only_also_after_a_deploy() -> None:
    """Cloud Run counts a same-project Pub/Sub push as internal; the build's deploy repeats the
    setting so it never reopens the function (docs/decisions.md, record 69)."""
    function = resources("google_cloudfunctions2_function")["replay"]
    assert function["service_config"][0]["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    build = (TERRAFORM.parent / "cloudbuild.yaml").read_text()
    assert build.count("gcloud functions deploy") == 1
    assert "--ingress-settings=internal-only" in build


def test_state_lives_in_a_gcs_backend_whose_bucket_is_given_at_init() -> None:
    (backend,) = (b["backend"] for b in HCL["terraform"] if "backend" in b)
    (gcs,) = (b["gcs"] for b in backend)
    assert "bucket" not in gcs  # partial configuration: -backend-config="bucket=…"
    assert gcs["prefix"]
