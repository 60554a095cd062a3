output "job_name" {
  description = "Cloud Run job to execute for a manual rerun."
  value       = google_cloud_run_v2_job.phonesync.name
}

output "job_service_account_email" {
  description = "Share the Google Sheet (Viewer) with this e-mail: the job reads it keylessly."
  value       = google_service_account.job.email
}

output "scheduler_service_account_email" {
  description = "Identity Cloud Scheduler uses to run the job."
  value       = google_service_account.scheduler.email
}

output "build_service_account_email" {
  description = "Identity of every build (cloudbuild.yaml serviceAccount) and of the function's build."
  value       = google_service_account.build.email
}

output "replay_service_account_email" {
  description = "Identity of the replay function."
  value       = google_service_account.replay.email
}

output "failure_topic" {
  description = "Pub/Sub topic of deferred rows."
  value       = google_pubsub_topic.failures.name
}

output "dead_letter_subscription" {
  description = "Where failures that exhausted their replays wait for an operator."
  value       = google_pubsub_subscription.dead_letter.name
}

output "replay_function" {
  description = "The replay function's name."
  value       = google_cloudfunctions2_function.replay.name
}

output "image_repository" {
  description = "Artifact Registry path for the job image."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "functions_source_bucket" {
  description = "Bucket cloudbuild uploads the replay function's zip to."
  value       = google_storage_bucket.functions_source.name
}

output "log_bucket" {
  description = "Where the job's and the function's logs and the Data Access audit logs are kept, in the region (gcloud logging read --bucket … --location … --view _AllLogs)."
  value       = google_logging_project_bucket_config.regional.id
}

output "egress_ip" {
  description = "static_egress: the one address the job and the replay function call the registry from (give it to the registry team to allow-list); null otherwise."
  value       = var.static_egress ? google_compute_address.egress[0].address : null
}

output "dashboard_id" {
  description = "Cloud Monitoring dashboard."
  value       = google_monitoring_dashboard.phonesync.id
}
