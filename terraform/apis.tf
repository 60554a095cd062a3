locals {
  services = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "sheets.googleapis.com",
    "storage.googleapis.com",
  ]
}

# static_egress only (network.tf): the network, the NAT and its address, the function's connector.
resource "google_project_service" "egress_apis" {
  for_each           = var.static_egress ? toset(["compute.googleapis.com", "vpcaccess.googleapis.com"]) : toset([])
  service            = each.key
  disable_on_destroy = false
}

resource "google_project_service" "apis" {
  for_each           = toset(local.services)
  service            = each.key
  disable_on_destroy = false
}
