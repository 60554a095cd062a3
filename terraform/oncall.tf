# The on-call group (var.oncall_group, e.g. "group:oncall@example.org"; empty: no grants): what
# docs/runbook.md asks of them, and no more. Read logs, metrics and Firestore; run the job with
# overrides (a backfill's RUN_DATE, a rerun); pause and resume the schedule; replay rows and
# drain dead letters. Changing the job, the function or IAM stays terraform's. Each grant is on
# the one resource it concerns where Google offers one; the project-level ones say why not.
locals {
  oncall = var.oncall_group == "" ? {} : { group = var.oncall_group }
  oncall_project_roles = var.oncall_group == "" ? [] : [
    "roles/logging.viewer",    # the scheduler's and the platform's logs (_Default); no per-log grant exists
    "roles/monitoring.viewer", # the dashboard, the alerts and their incidents: monitoring is project-wide
    # phonesync status / report / replay read runs, outcomes and manifests: Firestore grants are
    # project-wide (every read is in the Data Access audit logs, logging.tf).
    "roles/datastore.viewer",
    # `gcloud run jobs execute --wait` follows the execution, and `gcloud run jobs executions
    # list/describe` read it: executions and operations are read at the project (read-only).
    "roles/run.viewer",
    # Cloud Scheduler has no per-job IAM: pause, resume and read jobs, nothing else (custom role).
    google_project_iam_custom_role.scheduler_pause.name,
  ]
}

resource "google_project_iam_custom_role" "scheduler_pause" {
  role_id     = "${replace(var.job_name, "-", "_")}_scheduler_pause"
  title       = "phonesync: pause and resume the schedule"
  description = "Read, pause and resume Cloud Scheduler jobs (on-call: a maintenance night)"
  permissions = [
    "cloudscheduler.jobs.get",
    "cloudscheduler.jobs.list",
    "cloudscheduler.jobs.pause",
    "cloudscheduler.jobs.enable",
    "cloudscheduler.locations.list",
  ]
}

resource "google_project_iam_member" "oncall" {
  for_each = toset(local.oncall_project_roles)
  project  = var.project_id
  role     = each.key
  member   = var.oncall_group
}

# Backfills and reruns: an execution with overrides (RUN_DATE, reconcile's arguments) of this job
# alone, through the same custom role the weekly reconcile uses (iam.tf), not roles/run.developer
# (which would let on-call change the job).
resource "google_cloud_run_v2_job_iam_member" "oncall_runs_job" {
  for_each = local.oncall
  name     = google_cloud_run_v2_job.phonesync.name
  location = var.region
  role     = google_project_iam_custom_role.run_with_overrides.name
  member   = each.value
}

# The logs kept in the region (logging.tf): their bucket's view, nothing else of logging.
resource "google_logging_log_view_iam_member" "oncall_reads_regional_logs" {
  for_each = local.oncall
  parent   = "projects/${var.project_id}"
  location = var.region
  bucket   = google_logging_project_bucket_config.regional.bucket_id
  name     = "_AllLogs"
  role     = "roles/logging.viewAccessor"
  member   = each.value
}

# phonesync replay --via pubsub publishes deferred rows again to the failure topic.
resource "google_pubsub_topic_iam_member" "oncall_replays" {
  for_each = local.oncall
  topic    = google_pubsub_topic.failures.id
  role     = "roles/pubsub.publisher"
  member   = each.value
}

# Draining dead letters: pull (without acknowledging) and seek the inspection subscription.
resource "google_pubsub_subscription_iam_member" "oncall_drains_dead_letters" {
  for_each     = local.oncall
  subscription = google_pubsub_subscription.dead_letter.id
  role         = "roles/pubsub.subscriber"
  member       = each.value
}

# "replay dropped malformed messages": which source the function runs (gcloud functions describe).
resource "google_cloudfunctions2_function_iam_member" "oncall_reads_function" {
  for_each       = local.oncall
  cloud_function = google_cloudfunctions2_function.replay.name
  location       = var.region
  role           = "roles/cloudfunctions.viewer"
  member         = each.value
}
