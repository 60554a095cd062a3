terraform {
  # 1.9: a variable's validation may name other variables (task_timeout's budget, variables.tf).
  required_version = ">= 1.9"

  # Shared state in a GCS bucket (partial configuration: the bucket is given at init time,
  # `terraform init -backend-config="bucket=BUCKET"`, see docs/deploy.md). Without this block
  # -backend-config only warns and terraform plans against an empty local state.
  backend "gcs" {
    prefix = "phonesync"
  }

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    # Only for google_project_service_identity (iam.tf), which has no GA equivalent.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

locals {
  # Google-managed service agents that act on our behalf (created in iam.tf).
  pubsub_agent         = "serviceAccount:${google_project_service_identity.pubsub.email}"
  secret_manager_agent = "serviceAccount:${google_project_service_identity.secretmanager.email}"
}
