# The schedule's one place: the scheduler's cron below and the alerts' time of day
# (monitoring.tf) both come from var.schedule_hour. Asia/Jakarta is UTC+7 all year (no daylight
# saving since 1964), and PromQL's hour() is UTC: the alerts check the hour 7 hours earlier.
locals {
  schedule_utc_hour = (var.schedule_hour + 17) % 24
}

# schedule_hour:00 Asia/Jakarta every night: Cloud Scheduler calls the Cloud Run Admin API's
# jobs:run.
resource "google_cloud_scheduler_job" "nightly" {
  name             = "${var.job_name}-nightly"
  region           = var.region
  description      = "Sync the day's WhatsApp numbers into the FHIR registry"
  schedule         = "0 ${var.schedule_hour} * * *"
  time_zone        = "Asia/Jakarta"
  attempt_deadline = "120s"
  # Armed only once a run has been checked by hand (docs/deploy.md): a schedule armed before
  # the secrets exist fails every night.
  paused = var.schedule_paused

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.phonesync.name}:run"

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_service.apis]
}

# Sunday 03:00 Asia/Jakarta: the same job, read-only, as `phonesync reconcile --days N` (an
# execution with overrides: only the container's arguments change). Its drift is counted by the
# reconcile_drift metric and alerts in monitoring.tf; repairs are an operator's (runbook).
resource "google_cloud_scheduler_job" "reconcile" {
  name             = "${var.job_name}-reconcile"
  region           = var.region
  description      = "Weekly read-only check that the registry holds the officers' numbers"
  schedule         = "0 3 * * 0"
  time_zone        = "Asia/Jakarta"
  attempt_deadline = "120s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.phonesync.name}:run"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      overrides = {
        containerOverrides = [{ args = ["reconcile", "--days", tostring(var.reconcile_days)] }]
      }
    }))

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_service.apis]
}
