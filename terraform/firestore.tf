resource "google_firestore_database" "main" {
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"
  depends_on                        = [google_project_service.apis]
}

# The app writes expire_at = now + retention_days on every document, and now +
# manifest_retention_days on the manifest's (full NIKs and numbers); these policies delete them.
# Collection groups: runs, executions, ledger, sheet_reads, waiting and reconciles at the top,
# rows/tasks/manifest under runs/{date}, tasks/drift under reconciles/{id}.
resource "google_firestore_field" "ttl" {
  for_each   = toset(["runs", "executions", "rows", "tasks", "manifest", "ledger", "sheet_reads", "waiting", "reconciles", "drift"])
  database   = google_firestore_database.main.name
  collection = each.key
  field      = "expire_at"

  ttl_config {}

  # A TTL timestamp needs no index; exempting it avoids a write hotspot on monotonic values.
  index_config {}
}
