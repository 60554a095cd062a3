resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images hold code, no patient data; Google-managed encryption is accepted (a CMEK needs a KMS key ring the brief does not provide).
  location      = var.region
  repository_id = var.job_name
  format        = "DOCKER"
  description   = "phonesync job images"
  depends_on    = [google_project_service.apis]
}

resource "google_storage_bucket" "functions_source" {
  #checkov:skip=CKV_GCP_62:Access logs of a bucket holding only build artifacts add cost, not audit value; Cloud Audit Logs cover access.
  name                        = "${var.project_id}-${var.job_name}-functions"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
}
