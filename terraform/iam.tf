# One service account per role, each with only what that role needs. Project-level roles are
# listed here and nowhere else; everything else is granted on the single resource it concerns.

locals {
  project_roles = {
    job = [
      "roles/datastore.user",    # run lock, manifest, outcomes, ledger
      "roles/logging.logWriter", # structured logs (the metrics are log-based: no metricWriter)
    ]
    scheduler = [] # only run.invoker and run-with-overrides on the job itself (below)
    replay = [
      "roles/datastore.user",
      "roles/logging.logWriter",
    ]
    # Everything else the builds do is granted on its resource (build.tf).
    build = [
      "roles/logging.logWriter", # build logs (options.logging: CLOUD_LOGGING_ONLY); no per-log write grant exists
      # `gcloud functions deploy` waits on a long-running operation, a project-level resource
      # (cloudfunctions.operations.get) no grant on the function reaches; read-only.
      "roles/cloudfunctions.viewer",
    ]
  }
}

resource "google_service_account" "job" {
  account_id   = "${var.job_name}-job"
  display_name = "phonesync job (share the Sheet with this account)"
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.job_name}-scheduler"
  display_name = "phonesync scheduler: may only run the job"
}

resource "google_service_account" "replay" {
  account_id   = "${var.job_name}-replay"
  display_name = "phonesync replay function"
}

resource "google_project_iam_member" "job" {
  for_each = toset(local.project_roles.job)
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${google_service_account.job.email}"
}

resource "google_project_iam_member" "build" {
  for_each = toset(local.project_roles.build)
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${google_service_account.build.email}"
}

resource "google_project_iam_member" "replay" {
  for_each = toset(local.project_roles.replay)
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${google_service_account.replay.email}"
}

# --- resource-level grants -----------------------------------------------------------------

resource "google_secret_manager_secret_iam_member" "job_fhir_api_key" {
  secret_id = google_secret_manager_secret.fhir_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.job.email}"
}

resource "google_secret_manager_secret_iam_member" "job_ledger_key" {
  secret_id = google_secret_manager_secret.ledger_hmac_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.job.email}"
}

resource "google_secret_manager_secret_iam_member" "replay_fhir_api_key" {
  secret_id = google_secret_manager_secret.fhir_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.replay.email}"
}

resource "google_secret_manager_secret_iam_member" "job_fhir_client_secret" {
  secret_id = google_secret_manager_secret.fhir_client_secret.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.job.email}"
}

resource "google_secret_manager_secret_iam_member" "replay_fhir_client_secret" {
  secret_id = google_secret_manager_secret.fhir_client_secret.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.replay.email}"
}

resource "google_secret_manager_secret_iam_member" "replay_ledger_key" {
  secret_id = google_secret_manager_secret.ledger_hmac_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.replay.email}"
}

resource "google_pubsub_topic_iam_member" "job_publishes_failures" {
  topic  = google_pubsub_topic.failures.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.job.email}"
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_job" {
  name     = google_cloud_run_v2_job.phonesync.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The weekly reconcile is an execution with overrides (its arguments), which run.invoker does not
# allow: this role adds only run.jobs.runWithOverrides, granted on the job alone (roles/run.developer
# would also let the scheduler change the job).
resource "google_project_iam_custom_role" "run_with_overrides" {
  role_id     = "${replace(var.job_name, "-", "_")}_run_with_overrides"
  title       = "phonesync: run the job with overrides"
  description = "Execute the phonesync Cloud Run job with overridden arguments (the weekly reconcile)"
  permissions = ["run.jobs.run", "run.jobs.runWithOverrides"]
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_reconcile" {
  name     = google_cloud_run_v2_job.phonesync.name
  location = var.region
  role     = google_project_iam_custom_role.run_with_overrides.name
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The push subscription authenticates to the function as the replay account (OIDC).
resource "google_cloud_run_service_iam_member" "replay_invokes_function" {
  service  = google_cloudfunctions2_function.replay.service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.replay.email}"
}

resource "google_service_account_iam_member" "pubsub_mints_replay_tokens" {
  service_account_id = google_service_account.replay.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Service agents are created lazily: Secret Manager's does not exist until something asks for it,
# and an IAM grant to a missing agent fails ("Service account ... does not exist"). Creating both
# explicitly makes a first `terraform apply` on a fresh project work.
resource "google_project_service_identity" "pubsub" {
  provider   = google-beta
  service    = "pubsub.googleapis.com"
  depends_on = [google_project_service.apis]
}

resource "google_project_service_identity" "secretmanager" {
  provider   = google-beta
  service    = "secretmanager.googleapis.com"
  depends_on = [google_project_service.apis]
}

# Dead-lettering: Pub/Sub's agent must publish to the dead-letter topic and ack the source.
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_acks_dead_lettered" {
  subscription = google_pubsub_subscription.replay.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_topic_iam_member" "secret_manager_announces_rotation" {
  topic  = google_pubsub_topic.secret_rotation.id
  role   = "roles/pubsub.publisher"
  member = local.secret_manager_agent
}
