# Secret values never pass through terraform: operators add versions with
#   gcloud secrets versions add fhir-api-key --data-file=-
resource "google_secret_manager_secret" "fhir_api_key" {
  secret_id = "fhir-api-key"

  replication {
    user_managed {
      replicas {
        location = var.region # stored in the region only (automatic replication is global)
      }
    }
  }

  # Secret Manager announces on the topic when the key is due; the job reads `latest` at each
  # start, so adding a new version is the whole rotation (docs/runbook.md).
  rotation {
    rotation_period    = var.secret_rotation_period
    next_rotation_time = var.secret_next_rotation_time
  }

  topics {
    name = google_pubsub_topic.secret_rotation.id
  }

  depends_on = [google_pubsub_topic_iam_member.secret_manager_announces_rotation]
}

# FHIR_AUTH=oauth2: the client secret of the registry's OAuth 2.0 client (e.g. SATUSEHAT).
#   gcloud secrets versions add fhir-client-secret --data-file=-
# Only read when fhir_auth = "oauth2"; an empty secret costs nothing otherwise.
resource "google_secret_manager_secret" "fhir_client_secret" {
  secret_id = "fhir-client-secret"

  replication {
    user_managed {
      replicas {
        location = var.region # stored in the region only (automatic replication is global)
      }
    }
  }
}

# The ledger's HMAC key is not rotated on a schedule: a new key makes every ledger entry
# unrecognisable, so the next run re-checks every patient in FHIR (safe, no double writes, slow).
resource "google_secret_manager_secret" "ledger_hmac_key" {
  secret_id = "ledger-hmac-key"

  replication {
    user_managed {
      replicas {
        location = var.region # stored in the region only (automatic replication is global)
      }
    }
  }
}
