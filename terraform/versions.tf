terraform {
  required_version = ">= 1.5"
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
