variable "project_id" {
  description = "Google Cloud project that hosts phonesync."
  type        = string
}

variable "region" {
  description = "Region for Cloud Run, Cloud Functions, Scheduler and Artifact Registry."
  type        = string
  default     = "asia-southeast2" # Jakarta
}

variable "firestore_location" {
  description = "Firestore database location."
  type        = string
  default     = "asia-southeast2"
}

variable "job_name" {
  description = "Name of the Cloud Run job (and prefix of related resources)."
  type        = string
  default     = "phonesync"
}

variable "image" {
  description = "Container image of the job, e.g. asia-southeast2-docker.pkg.dev/PROJECT/phonesync/phonesync:TAG."
  type        = string
}

variable "task_count" {
  description = "Tasks per execution: the sheet's rows are split across them by NIK."
  type        = number
  default     = 4
}

variable "parallelism" {
  description = "Tasks running at once (≤ task_count)."
  type        = number
  default     = 4
}

variable "task_timeout" {
  description = "Per-task timeout (a task that hits it is retried; the run lock's lease lets the retry take over)."
  type        = string
  default     = "3000s"
}

variable "max_retries" {
  description = "Retries of a failed task (a task exits non-zero only when it should be retried)."
  type        = number
  default     = 3
}

variable "cpu" {
  description = "CPU limit per task."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit per task."
  type        = string
  default     = "1Gi"
}

variable "sheet_id" {
  description = "Google Sheet id; share the Sheet (Viewer) with the job's service account e-mail."
  type        = string
}

variable "sheet_range" {
  description = "A1 range holding the header row and the data."
  type        = string
  default     = "A:Z"
}

variable "fhir_base_url" {
  description = "FHIR R4 base URL of the national registry."
  type        = string
}

variable "fhir_concurrency" {
  description = "Concurrent FHIR requests per task."
  type        = number
  default     = 64
}

variable "fhir_rate_limit" {
  description = "FHIR requests per second per task: the server's limit divided by parallelism."
  type        = number
  default     = 50
}

variable "fhir_timeout_seconds" {
  description = "Timeout of one FHIR request."
  type        = number
  default     = 15
}

variable "fhir_deadline_seconds" {
  description = "How long a down FHIR server is waited for before remaining rows are deferred."
  type        = number
  default     = 600
}

variable "lookback_days" {
  description = "Also sync unapplied rows of this many previous days."
  type        = number
  default     = 1
}

variable "retention_days" {
  description = "Days Firestore keeps run, row, manifest and ledger documents (expire_at + TTL policy)."
  type        = number
  default     = 400
}

variable "max_delivery_attempts" {
  description = "Replay attempts per failure message before it goes to the dead-letter topic."
  type        = number
  default     = 10
}

variable "function_source_object" {
  description = "Object in the functions source bucket holding the replay function's zip (cloudbuild uploads it)."
  type        = string
  default     = "replay/replay-latest.zip"
}

variable "replay_max_instances" {
  description = "Upper bound of replay function instances (protects the FHIR server's rate limit)."
  type        = number
  default     = 5
}

variable "secret_rotation_period" {
  description = "How often Secret Manager announces that the FHIR API key is due for rotation."
  type        = string
  default     = "7776000s" # 90 days
}

variable "secret_next_rotation_time" {
  description = "First rotation announcement (RFC 3339)."
  type        = string
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids for the alert policies."
  type        = list(string)
  default     = []
}

variable "failure_ratio_threshold" {
  description = "Alert when deferred+error rows exceed this share of rows in an hour."
  type        = number
  default     = 0.05
}

variable "rejected_ratio_threshold" {
  description = "Alert when rows rejected by the sheet rules exceed this share of a night's rows."
  type        = number
  default     = 0.2
}

variable "fhir_retry_rate_threshold" {
  description = "Alert when FHIR 429/5xx/timeouts exceed this many per second."
  type        = number
  default     = 5
}

variable "max_run_minutes" {
  description = "Alert when the nightly run has not finished this many minutes after 23:00."
  type        = number
  default     = 25
}
