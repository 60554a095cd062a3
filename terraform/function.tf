locals {
  replay_env = {
    GOOGLE_CLOUD_PROJECT      = var.project_id
    STATE_BACKEND             = "firestore"
    FHIR_BASE_URL             = var.fhir_base_url
    FHIR_AUTH                 = var.fhir_auth
    FHIR_API_KEY_SECRET       = google_secret_manager_secret.fhir_api_key.id
    FHIR_TOKEN_URL            = var.fhir_token_url
    FHIR_CLIENT_ID            = var.fhir_client_id
    FHIR_CLIENT_SECRET_SECRET = google_secret_manager_secret.fhir_client_secret.id
    FHIR_WRITE                = var.fhir_write
    FHIR_PATCH_OPS            = var.fhir_patch_ops
    LEDGER_KEY_SECRET         = google_secret_manager_secret.ledger_hmac_key.id
    RETENTION_DAYS            = tostring(var.retention_days)
    FHIR_CONCURRENCY          = "4"
    # Below timeout_seconds (300): a registry that only answers 429 ends the call with a 500 the
    # function sends itself, and Pub/Sub redelivers with its backoff, instead of the platform
    # killing the call mid-request (a 429 uses up no attempt: only this deadline ends it).
    FHIR_DEADLINE_SECONDS = "240"
  }
}

# Source: cloudbuild.yaml zips functions/replay/main.py with common/ and requirements.txt and
# uploads it to this bucket (step package-function); function_source_object names the zip.
resource "google_cloudfunctions2_function" "replay" {
  name     = "${var.job_name}-replay"
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = "replay"
    # Built as the build account (build.tf: it reads the source bucket, writes the repository and
    # logs) into the job's repository, not Google's gcf-artifacts (which no grant here reaches).
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.images.id
    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = var.function_source_object
      }
    }
  }

  service_config {
    service_account_email = google_service_account.replay.email
    max_instance_count    = var.replay_max_instances
    available_memory      = "512Mi"
    timeout_seconds       = 300
    # Internal only: Cloud Run counts a Pub/Sub push from a subscription in the same project as
    # internal traffic; callers still need run.invoker (docs/decisions.md, record 69).
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.replay_env
    # static_egress: every call leaves through the NAT's reserved address (network.tf).
    vpc_connector                 = var.static_egress ? google_vpc_access_connector.egress[0].id : null
    vpc_connector_egress_settings = var.static_egress ? "ALL_TRAFFIC" : null
  }

  # cloudbuild.yaml deploys new sources; terraform owns settings, identity and environment.
  lifecycle {
    ignore_changes = [build_config[0].source]
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build_pushes_images,
    google_storage_bucket_iam_member.build_uploads_function_source,
  ]
}
