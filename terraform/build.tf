# The identity of every build: cloudbuild.yaml names it (serviceAccount), and so does the replay
# function's own build (function.tf, build_config.service_account). Each grant is on the one
# resource it concerns; the project-level ones are in iam.tf's project_roles, each saying why no
# narrower grant exists (tests/test_terraform.py asserts both lists exactly).
resource "google_service_account" "build" {
  account_id   = "${var.job_name}-build"
  display_name = "phonesync builds: push the image and the function's source, deploy both"
}

# Push the job's image (and the function's image, built into the same repository).
resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  repository = google_artifact_registry_repository.images.name
  location   = var.region
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# Upload the function's zip (replay-latest.zip is overwritten: objectAdmin, not objectCreator),
# and read it back when Cloud Functions builds the function as this account.
resource "google_storage_bucket_iam_member" "build_uploads_function_source" {
  bucket = google_storage_bucket.functions_source.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.build.email}"
}

# `gcloud run jobs update --image` on this job only (roles/run.developer on the job, not the
# project: it cannot create or change another service or job).
resource "google_cloud_run_v2_job_iam_member" "build_updates_job" {
  name     = google_cloud_run_v2_job.phonesync.name
  location = var.region
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.build.email}"
}

# `gcloud functions deploy` of this function only.
resource "google_cloudfunctions2_function_iam_member" "build_deploys_function" {
  cloud_function = google_cloudfunctions2_function.replay.name
  location       = var.region
  role           = "roles/cloudfunctions.developer"
  member         = "serviceAccount:${google_service_account.build.email}"
}

# A deploy acts as the runtime identity it keeps (the job's, the function's) and the function's
# build acts as this account: actAs on exactly these three, no other service account.
resource "google_service_account_iam_member" "build_acts_as_job" {
  service_account_id = google_service_account.job.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.build.email}"
}

resource "google_service_account_iam_member" "build_acts_as_replay" {
  service_account_id = google_service_account.replay.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.build.email}"
}

resource "google_service_account_iam_member" "build_acts_as_itself" {
  service_account_id = google_service_account.build.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.build.email}"
}

# `terraform plan` in the build reads the shared state (and terraform.tfvars beside it) only:
# the plan runs with -refresh=false (cloudbuild.yaml), so it reads no resource and needs no
# viewer role on the project (roles/viewer would include reading Firestore's documents).
resource "google_storage_bucket_iam_member" "build_reads_state" {
  count  = var.tf_state_bucket == "" ? 0 : 1
  bucket = var.tf_state_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}
