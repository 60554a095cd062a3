# Who read what: Data Access audit logs for Firestore (the manifest's full NIKs and numbers, the
# ledger) and Secret Manager (the registry's credentials, the ledger key). Admin Activity audit
# logs are always on. No principal is exempted: the job's own reads and writes are batched (a
# few thousand entries a night at most), and a misused job identity is what they must show.
resource "google_project_iam_audit_config" "firestore" {
  project = var.project_id
  service = "datastore.googleapis.com" # configures firestore.googleapis.com too (Firestore's docs)

  audit_log_config {
    log_type = "ADMIN_READ"
  }
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

resource "google_project_iam_audit_config" "secretmanager" {
  project = var.project_id
  service = "secretmanager.googleapis.com"

  audit_log_config {
    log_type = "ADMIN_READ"
  }
  audit_log_config {
    log_type = "DATA_READ" # AccessSecretVersion: every read of a secret's value
  }
}

# The job's and the function's logs (masked NIKs, no numbers) and the audit logs above are kept
# in a log bucket in the region for log_retention_days, and not in _Default, whose location is
# global and fixed when the project was created (docs/decisions.md, 108). Log-based metrics are
# computed from every log the project receives, whatever the sinks and exclusions, so the
# metrics and alerts are unchanged; reading these logs takes the bucket's view
# (`gcloud logging read $LOGS …`, docs/runbook.md).
locals {
  audit_logs    = "logName:\"cloudaudit.googleapis.com%2Fdata_access\" AND (protoPayload.serviceName=\"firestore.googleapis.com\" OR protoPayload.serviceName=\"datastore.googleapis.com\" OR protoPayload.serviceName=\"secretmanager.googleapis.com\")"
  regional_logs = "(${local.job_logs}) OR (${local.function_logs}) OR (${local.audit_logs})"
}

resource "google_logging_project_bucket_config" "regional" {
  project        = var.project_id
  location       = var.region
  bucket_id      = var.job_name
  retention_days = var.log_retention_days
  description    = "phonesync's job, function and data access audit logs, kept in the region"
  depends_on     = [google_project_service.apis]
}

resource "google_logging_project_sink" "regional" {
  name        = "${var.job_name}-regional"
  description = "phonesync's logs to its bucket in the region"
  destination = "logging.googleapis.com/${google_logging_project_bucket_config.regional.id}"
  filter      = local.regional_logs
  # A log bucket of the same project needs no grant to the sink's writer identity.
  unique_writer_identity = true
}

# The _Default sink no longer stores them (a global copy would defeat the regional bucket).
resource "google_logging_project_exclusion" "regional" {
  name        = "${var.job_name}-kept-in-region"
  description = "phonesync's logs are stored in the regional bucket instead (logging.tf)"
  filter      = local.regional_logs
  depends_on  = [google_logging_project_sink.regional]
}
