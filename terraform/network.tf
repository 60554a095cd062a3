# An optional static egress address (static_egress = true) for a registry that allow-lists the
# callers' IPs: the job and the replay function send all their traffic through a VPC whose Cloud
# NAT uses one reserved external address (output egress_ip). Off by default: nothing here exists.
# The job uses Direct VPC egress; the function a Serverless VPC Access connector, the only VPC
# egress google_cloudfunctions2_function offers (docs/decisions.md, 110).

resource "google_compute_network" "egress" {
  #checkov:skip=CKV2_GCP_18:Nothing listens in this network, used for egress only; the implied rule denies all ingress.
  count                   = var.static_egress ? 1 : 0
  name                    = "${var.job_name}-egress"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.egress_apis]
}

# The job's tasks (Direct VPC egress takes addresses from it: a /26 is 60, tasks use 2 each).
# Private Google Access: Firestore, Pub/Sub, Secret Manager and Sheets stay on Google's network.
resource "google_compute_subnetwork" "egress" {
  #checkov:skip=CKV_GCP_26:Flow logs of a subnet whose only traffic is the job's calls add cost; the NAT logs its errors.
  #checkov:skip=CKV_GCP_76:The job and the registry speak IPv4; there is no IPv6 range to give Google access to.
  count                    = var.static_egress ? 1 : 0
  name                     = "${var.job_name}-egress"
  region                   = var.region
  network                  = google_compute_network.egress[0].id
  ip_cidr_range            = var.egress_cidrs.job
  private_ip_google_access = true
}

# The connector's own /28, as Serverless VPC Access requires.
resource "google_compute_subnetwork" "connector" {
  #checkov:skip=CKV_GCP_26:Flow logs of a subnet whose only traffic is the function's calls add cost; the NAT logs its errors.
  #checkov:skip=CKV_GCP_76:The function and the registry speak IPv4; there is no IPv6 range to give Google access to.
  count                    = var.static_egress ? 1 : 0
  name                     = "${var.job_name}-connector"
  region                   = var.region
  network                  = google_compute_network.egress[0].id
  ip_cidr_range            = var.egress_cidrs.connector
  private_ip_google_access = true
}

resource "google_compute_address" "egress" {
  count        = var.static_egress ? 1 : 0
  name         = "${var.job_name}-egress"
  region       = var.region
  address_type = "EXTERNAL"
  description  = "phonesync's address as the registry sees it (allow-list it there)"
}

resource "google_compute_router" "egress" {
  count   = var.static_egress ? 1 : 0
  name    = "${var.job_name}-egress"
  region  = var.region
  network = google_compute_network.egress[0].id
}

resource "google_compute_router_nat" "egress" {
  count                              = var.static_egress ? 1 : 0
  name                               = "${var.job_name}-egress"
  router                             = google_compute_router.egress[0].name
  region                             = var.region
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.egress[0].self_link]
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.egress[0].id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  subnetwork {
    name                    = google_compute_subnetwork.connector[0].id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY" # ports exhausted, connections dropped: a registry that stops answering
  }
}

resource "google_vpc_access_connector" "egress" {
  count         = var.static_egress ? 1 : 0
  name          = "${var.job_name}-vpc"
  region        = var.region
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
  depends_on    = [google_project_service.egress_apis]

  subnet {
    name = google_compute_subnetwork.connector[0].name
  }
}
