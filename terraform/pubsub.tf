# Failure messages carry full NIKs and numbers, like the manifest a replay checks them against:
# kept no longer than it (manifest_retention_days, within Pub/Sub's 7-day maximum).
locals {
  pii_message_retention = "${min(var.manifest_retention_days, 7) * 86400}s"
}

resource "google_pubsub_topic" "failures" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is accepted for this project; a CMEK would need a KMS key ring the brief does not provide.
  name                       = "${var.job_name}-failures"
  message_retention_duration = local.pii_message_retention

  # Messages carry full NIKs and numbers: stored only in the region (UU 27/2022 PDP, design.md).
  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is accepted for this project (see failures topic).
  name = "${var.job_name}-failures-dead-letter"

  # Messages carry full NIKs and numbers: stored only in the region (UU 27/2022 PDP, design.md).
  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }

  depends_on = [google_project_service.apis]
}

# The replay function's trigger. An explicit push subscription (rather than an Eventarc trigger,
# whose managed subscription terraform cannot give a dead-letter policy): retries with backoff,
# then the dead-letter topic after max_delivery_attempts. functions-framework turns the push
# envelope into the CloudEvent the function expects (tested in tests/test_replay_function.py).
resource "google_pubsub_subscription" "replay" {
  name                       = "${var.job_name}-replay"
  topic                      = google_pubsub_topic.failures.id
  ack_deadline_seconds       = 300
  message_retention_duration = local.pii_message_retention

  push_config {
    push_endpoint = google_cloudfunctions2_function.replay.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.replay.email
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "30s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = "" # never expires
  }
}

# Dead letters wait here for an operator (`gcloud pubsub subscriptions pull …`, docs/runbook.md).
resource "google_pubsub_subscription" "dead_letter" {
  name                       = "${var.job_name}-dead-letter-inspect"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = local.pii_message_retention
  retain_acked_messages      = true
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic" "secret_rotation" {
  #checkov:skip=CKV_GCP_83:Rotation notices carry no secret material.
  name = "${var.job_name}-secret-rotation"

  # Messages carry full NIKs and numbers: stored only in the region (UU 27/2022 PDP, design.md).
  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }

  depends_on = [google_project_service.apis]
}

# Pub/Sub drops what is published to a topic without subscriptions, so the rotation notice needs
# one: it keeps SECRET_ROTATE (Secret Manager also announces every other change of the secret on
# the topic; the filter leaves those out) until someone acknowledges it, and the alert policy
# "phonesync: FHIR API key rotation due" pages while one waits (docs/runbook.md).
resource "google_pubsub_subscription" "secret_rotation_due" {
  name                       = "${var.job_name}-secret-rotation-due"
  topic                      = google_pubsub_topic.secret_rotation.id
  filter                     = "attributes.eventType = \"SECRET_ROTATE\""
  message_retention_duration = "2678400s" # 31 days, Pub/Sub's maximum: the page lasts until acknowledged
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # a 90-day rotation period is longer than the default 31-day inactivity expiry
  }
}
