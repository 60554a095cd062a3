locals {
  # Names of secrets, never their values: the job reads `latest` at start (rotation needs no redeploy).
  job_env = {
    SHEET_ID                  = var.sheet_id
    SHEET_RANGE               = var.sheet_range
    REPORT_SHEET_ID           = var.report_sheet_id
    REPORT_SHEET_TAB          = var.report_sheet_tab
    FHIR_BASE_URL             = var.fhir_base_url
    FHIR_AUTH                 = var.fhir_auth
    FHIR_API_KEY_SECRET       = google_secret_manager_secret.fhir_api_key.id
    FHIR_TOKEN_URL            = var.fhir_token_url
    FHIR_CLIENT_ID            = var.fhir_client_id
    FHIR_CLIENT_SECRET_SECRET = google_secret_manager_secret.fhir_client_secret.id
    LEDGER_KEY_SECRET         = google_secret_manager_secret.ledger_hmac_key.id
    GOOGLE_CLOUD_PROJECT      = var.project_id
    STATE_BACKEND             = "firestore"
    FAILURE_TOPIC             = google_pubsub_topic.failures.name
    FHIR_CONCURRENCY          = tostring(var.fhir_concurrency)
    FHIR_RATE_LIMIT           = tostring(var.fhir_rate_limit)
    FHIR_BATCH_SIZE           = var.fhir_batch_size
    FHIR_WRITE                = var.fhir_write
    FHIR_PATCH_OPS            = var.fhir_patch_ops
    FHIR_TIMEOUT_SECONDS      = tostring(var.fhir_timeout_seconds)
    FHIR_DEADLINE_SECONDS     = tostring(var.fhir_deadline_seconds)
    LOOKBACK_DAYS             = tostring(var.lookback_days)
    QUIET_WEEKDAYS            = join(",", var.quiet_weekdays)
    CATCH_UP_DAYS             = tostring(var.catch_up_days)
    ACTION_DAYS               = tostring(var.action_days)
    RETENTION_DAYS            = tostring(var.retention_days)
    MANIFEST_RETENTION_DAYS   = tostring(var.manifest_retention_days)
  }
}

resource "google_cloud_run_v2_job" "phonesync" {
  name                = var.job_name
  location            = var.region
  deletion_protection = false

  template {
    task_count  = var.task_count
    parallelism = var.parallelism

    template {
      service_account = google_service_account.job.email
      timeout         = var.task_timeout
      max_retries     = var.max_retries

      # static_egress: every call leaves through the NAT's reserved address (network.tf).
      dynamic "vpc_access" {
        for_each = var.static_egress ? [1] : []
        content {
          egress = "ALL_TRAFFIC"
          network_interfaces {
            network    = google_compute_network.egress[0].id
            subnetwork = google_compute_subnetwork.egress[0].id
          }
        }
      }

      containers {
        image = var.image
        # The nightly job is `phonesync run`; an execution with overrides replaces only the
        # arguments (the weekly reconcile: `phonesync reconcile …`, scheduler.tf).
        command = ["phonesync"]
        args    = ["run"]

        resources {
          limits = {
            cpu    = var.cpu
            memory = var.memory
          }
        }

        dynamic "env" {
          for_each = local.job_env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  # cloudbuild.yaml deploys new images (`gcloud run jobs update --image`); terraform owns the rest.
  lifecycle {
    ignore_changes = [template[0].template[0].containers[0].image]
  }

  depends_on = [google_project_service.apis]
}
