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

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,19}$", var.job_name))
    error_message = "job_name: lowercase letters, digits and hyphens, starting with a letter, at most 20 characters (service account ids \"<job_name>-scheduler\" may have 30)."
  }
}

variable "image" {
  description = "Container image of the job, e.g. asia-southeast2-docker.pkg.dev/PROJECT/phonesync/phonesync:TAG."
  type        = string
}

variable "task_count" {
  description = "Tasks per execution: the sheet's rows are split across them by NIK."
  type        = number
  default     = 4

  validation {
    condition     = var.task_count >= 1 && var.task_count <= 10000 && floor(var.task_count) == var.task_count
    error_message = "task_count must be a whole number from 1 to 10000 (Cloud Run's limit)."
  }
}

variable "parallelism" {
  description = "Tasks running at once (≤ task_count)."
  type        = number
  default     = 4

  validation {
    condition     = var.parallelism >= 1 && floor(var.parallelism) == var.parallelism
    error_message = "parallelism must be a whole number ≥ 1."
  }
}

variable "task_timeout" {
  description = "Per-task timeout of one attempt. A task that hits it is retried; meanwhile any live task of the run takes its shard over once its lease lapses (docs/decisions.md, 80-83). Within the night's budget: task_timeout × (max_retries + 1) ≤ max_run_minutes, and room after fhir_deadline_seconds to defer rows (docs/decisions.md, 106)."
  type        = string
  default     = "750s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.task_timeout)) && try(tonumber(trimsuffix(var.task_timeout, "s")) >= 60 && tonumber(trimsuffix(var.task_timeout, "s")) <= 604800, false)
    error_message = "task_timeout: seconds with an s suffix, from 60s to 604800s (7 days), e.g. \"750s\"."
  }

  # Cross-variable conditions (Terraform >= 1.9, versions.tf). try(…, true): a malformed value is
  # the rule above's to report, once.
  validation {
    condition     = try(tonumber(trimsuffix(var.task_timeout, "s")) * (var.max_retries + 1) <= var.max_run_minutes * 60, true)
    error_message = "task_timeout × (max_retries + 1) must fit in max_run_minutes (default 25 × 60 = 1500 s): a task stuck through every attempt would otherwise outlast the night's budget (e.g. 750s with max_retries = 1)."
  }

  validation {
    condition     = try(tonumber(trimsuffix(var.task_timeout, "s")) >= var.fhir_deadline_seconds + 120, true)
    error_message = "task_timeout must be at least fhir_deadline_seconds + 120 s: a task waiting out a down registry needs the time to defer its remaining rows before it is killed."
  }
}

variable "max_retries" {
  description = "Retries of a failed task (a task exits non-zero only when it should be retried). One is enough: a dead task's shard is taken over by any live task of the run (its lease lapses), so a retry is for a task 0 that could not write the manifest, or a run whose every task died."
  type        = number
  default     = 1

  validation {
    condition     = var.max_retries >= 0 && var.max_retries <= 10 && floor(var.max_retries) == var.max_retries
    error_message = "max_retries must be a whole number from 0 to 10 (Cloud Run's limit)."
  }
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

variable "report_sheet_id" {
  description = "Spreadsheet the officers' report tab is written to (shared with the job's account as Editor); empty = no report tab."
  type        = string
  default     = ""
}

variable "report_sheet_tab" {
  description = "Tab of report_sheet_id replaced after each run with the rows needing an officer."
  type        = string
  default     = "phonesync"
  validation {
    condition     = length(var.report_sheet_tab) >= 1 && length(var.report_sheet_tab) <= 100
    error_message = "report_sheet_tab must be 1 to 100 characters (a Sheets tab name)."
  }
}

variable "fhir_base_url" {
  description = "FHIR R4 base URL of the national registry."
  type        = string
}

variable "fhir_auth" {
  description = "How the job authenticates to FHIR: api-key (x-api-key from secret fhir-api-key), oauth2 (client credentials; secret fhir-client-secret) or google (the job's service account, e.g. a Cloud Healthcare API FHIR store)."
  type        = string
  default     = "api-key"

  validation {
    condition     = contains(["api-key", "oauth2", "google"], var.fhir_auth)
    error_message = "fhir_auth must be api-key, oauth2 or google."
  }
}

variable "fhir_token_url" {
  description = "oauth2 only: the token endpoint (SATUSEHAT: https://api-satusehat.kemkes.go.id/oauth2/v1/accesstoken?grant_type=client_credentials)."
  type        = string
  default     = ""
}

variable "fhir_client_id" {
  description = "oauth2 only: the client id (not secret); its secret goes into secret fhir-client-secret."
  type        = string
  default     = ""
}

variable "fhir_concurrency" {
  description = "Concurrent FHIR requests per task."
  type        = number
  default     = 64

  validation {
    condition     = var.fhir_concurrency >= 1 && floor(var.fhir_concurrency) == var.fhir_concurrency
    error_message = "fhir_concurrency must be a whole number ≥ 1."
  }
}

variable "fhir_rate_limit" {
  description = "FHIR requests per second per task: the server's limit divided by parallelism."
  type        = number
  default     = 50

  validation {
    condition     = var.fhir_rate_limit >= 0
    error_message = "fhir_rate_limit must be ≥ 0 (0 = unlimited)."
  }
}

variable "fhir_batch_size" {
  description = "Entries per FHIR batch Bundle: \"auto\" (50 when the server lists batch, else 0), or 0 for one request per search/update."
  type        = string
  default     = "auto"

  validation {
    condition     = can(regex("^(auto|[0-9]+)$", var.fhir_batch_size))
    error_message = "fhir_batch_size must be \"auto\" or a whole number of entries (0 = no batch)."
  }
}

variable "fhir_write" {
  description = "How a patient is written: \"auto\" (PUT when the registry's CapabilityStatement lists Patient update, JSON Patch when it lists only patch), \"update\" or \"patch\"."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "update", "patch"], var.fhir_write)
    error_message = "fhir_write must be \"auto\", \"update\" or \"patch\"."
  }
}

variable "fhir_patch_ops" {
  description = "JSON Patch ops the registry takes: \"add-replace\", or \"replace-only\" (SATUSEHAT's reported limit; a patient without telecom is then an error row)."
  type        = string
  default     = "add-replace"

  validation {
    condition     = contains(["add-replace", "replace-only"], var.fhir_patch_ops)
    error_message = "fhir_patch_ops must be \"add-replace\" or \"replace-only\"."
  }
}

variable "fhir_timeout_seconds" {
  description = "Timeout of one FHIR request."
  type        = number
  default     = 15

  validation {
    condition     = var.fhir_timeout_seconds > 0
    error_message = "fhir_timeout_seconds must be > 0."
  }
}

variable "fhir_deadline_seconds" {
  description = "How long a down FHIR server is waited for before remaining rows are deferred."
  type        = number
  default     = 600

  validation {
    condition     = var.fhir_deadline_seconds > 0
    error_message = "fhir_deadline_seconds must be > 0."
  }
}

variable "lookback_days" {
  description = "Also sync unapplied rows of this many previous days."
  type        = number
  default     = 1

  validation {
    condition     = var.lookback_days >= 0 && floor(var.lookback_days) == var.lookback_days
    error_message = "lookback_days must be a whole number ≥ 0."
  }
}

variable "catch_up_days" {
  description = "A night also syncs the dates no finished run covered (missed nights), at most this many days back; older ones are reported unsynced until backfilled."
  type        = number
  default     = 7

  validation {
    condition     = var.catch_up_days >= 0 && var.catch_up_days <= 14 && floor(var.catch_up_days) == var.catch_up_days
    error_message = "catch_up_days must be a whole number from 0 to 14 (each date's rows are that night's work: memory and FHIR calls)."
  }
}

variable "action_days" {
  description = "A row waiting on a field officer is checked again every night until this many days after its date; unsynced dates are reported for as long."
  type        = number
  default     = 30

  validation {
    condition     = var.action_days >= 1 && var.action_days <= 90 && floor(var.action_days) == var.action_days
    error_message = "action_days must be a whole number from 1 to 90."
  }
}

variable "officer_wait_alert_days" {
  description = "Alert when a row has waited on a field officer longer than this many days (below action_days, after which rows leave the officers' tab)."
  type        = number
  default     = 14

  validation {
    condition     = var.officer_wait_alert_days >= 1 && floor(var.officer_wait_alert_days) == var.officer_wait_alert_days
    error_message = "officer_wait_alert_days must be a whole number ≥ 1."
  }
}

variable "retention_days" {
  description = "Days Firestore keeps run, row, ledger and the other documents (expire_at + TTL policy); the manifest, with full NIKs and numbers, has manifest_retention_days."
  type        = number
  default     = 400

  validation {
    condition     = var.retention_days >= 1 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number ≥ 1."
  }
}

variable "manifest_retention_days" {
  description = "Days the manifest (each row's full NIK and number) is kept after it is written (MANIFEST_RETENTION_DAYS): replays of a run need it; after it, rerun the date. The failure topic and dead letters keep messages (full NIKs too) no longer (at most Pub/Sub's 7 days)."
  type        = number
  default     = 3

  validation {
    condition     = var.manifest_retention_days >= 1 && var.manifest_retention_days <= 31 && floor(var.manifest_retention_days) == var.manifest_retention_days
    error_message = "manifest_retention_days must be a whole number from 1 to 31."
  }

  validation {
    condition     = var.manifest_retention_days <= var.retention_days
    error_message = "manifest_retention_days must not exceed retention_days: the run records that name the manifest outlive it."
  }
}

variable "log_retention_days" {
  description = "Days the regional log bucket keeps the job's and the function's logs and the Data Access audit logs of Firestore and Secret Manager (logging.tf): who read the manifest or a secret stays answerable for as long."
  type        = number
  default     = 400

  validation {
    condition     = var.log_retention_days >= 1 && var.log_retention_days <= 3650 && floor(var.log_retention_days) == var.log_retention_days
    error_message = "log_retention_days must be a whole number from 1 to 3650 (Cloud Logging's limits)."
  }
}

variable "max_delivery_attempts" {
  description = "Replay attempts per failure message before it goes to the dead-letter topic."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100 (Pub/Sub's dead-letter limits)."
  }
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

  validation {
    condition     = var.replay_max_instances >= 1 && floor(var.replay_max_instances) == var.replay_max_instances
    error_message = "replay_max_instances must be a whole number ≥ 1."
  }
}

variable "secret_rotation_period" {
  description = "How often Secret Manager announces that the FHIR API key is due for rotation."
  type        = string
  default     = "7776000s" # 90 days

  validation {
    condition     = can(regex("^[0-9]+s$", var.secret_rotation_period)) && try(tonumber(trimsuffix(var.secret_rotation_period, "s")) >= 3600, false)
    error_message = "secret_rotation_period: seconds with an s suffix, at least 3600s (Secret Manager's minimum), e.g. \"7776000s\"."
  }
}

variable "secret_next_rotation_time" {
  description = "First rotation announcement (RFC 3339)."
  type        = string

  validation {
    condition     = can(timeadd(var.secret_next_rotation_time, "0s"))
    error_message = "secret_next_rotation_time must be an RFC 3339 time, e.g. \"2027-01-01T00:00:00Z\"."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids for the alert policies."
  type        = list(string)

  validation {
    condition     = length(var.notification_channels) > 0
    error_message = "notification_channels: give at least one channel, or no alert (not even the key-rotation reminder) reaches a person."
  }
}

variable "error_ratio_threshold" {
  description = "Alert when rows ending `error` (the registry refused them for good; deferred rows are the replay function's) exceed this share of the job's rows in an hour."
  type        = number
  default     = 0.05

  validation {
    condition     = var.error_ratio_threshold > 0 && var.error_ratio_threshold < 1
    error_message = "error_ratio_threshold is a share of rows: between 0 and 1, exclusive."
  }
}

variable "ratio_min_rows" {
  description = "The error and rejected ratio alerts stay quiet below this many rows in the hour (1 error in 10 rows is not a trend); fewer rows still show in the run's status and the \"runs left partial\" alert."
  type        = number
  default     = 50

  validation {
    condition     = var.ratio_min_rows >= 1 && floor(var.ratio_min_rows) == var.ratio_min_rows
    error_message = "ratio_min_rows must be a whole number ≥ 1."
  }
}

variable "rejected_ratio_threshold" {
  description = "Alert when rows rejected by the sheet rules exceed this share of a night's rows."
  type        = number
  default     = 0.2

  validation {
    condition     = var.rejected_ratio_threshold > 0 && var.rejected_ratio_threshold < 1
    error_message = "rejected_ratio_threshold is a share of rows: between 0 and 1, exclusive."
  }
}

variable "fhir_retry_rate_threshold" {
  description = "Alert when FHIR 429/5xx/timeouts exceed this many per second."
  type        = number
  default     = 5

  validation {
    condition     = var.fhir_retry_rate_threshold > 0
    error_message = "fhir_retry_rate_threshold must be > 0."
  }
}

variable "max_run_minutes" {
  description = "Alert when the nightly run has not finished this many minutes after its scheduled start, and when any run took longer."
  type        = number
  default     = 25

  validation {
    condition     = var.max_run_minutes >= 1 && var.max_run_minutes < 45 && floor(var.max_run_minutes) == var.max_run_minutes
    error_message = "max_run_minutes must be a whole number from 1 to 44: the \"run not finished\" alert checks from that minute until 23:45, so 45 or more would disable it silently."
  }
}

variable "reconcile_days" {
  description = "Sheet dates the weekly reconcile checks, ending at the newest date every nightly run has taken (phonesync reconcile --days)"
  type        = number
  default     = 28
  validation {
    condition     = var.reconcile_days >= 1 && var.reconcile_days <= 366 && floor(var.reconcile_days) == var.reconcile_days
    error_message = "reconcile_days must be a whole number of days from 1 to 366."
  }
}

variable "reconcile_drift_threshold" {
  description = "Drifted NIKs (missing, different, registry_newer) one reconcile may find before the drift alert pages"
  type        = number
  default     = 10
  validation {
    condition     = var.reconcile_drift_threshold >= 0
    error_message = "reconcile_drift_threshold cannot be negative."
  }
}

variable "schedule_hour" {
  description = "Hour of the night (Asia/Jakarta, on the hour) the scheduler starts the job; the alerts' time of day follows it."
  type        = number
  default     = 23

  validation {
    condition     = var.schedule_hour >= 0 && var.schedule_hour <= 23 && floor(var.schedule_hour) == var.schedule_hour
    error_message = "schedule_hour must be a whole hour from 0 to 23 (Asia/Jakarta)."
  }
}

variable "quiet_weekdays" {
  description = "Days of the week the officers record no visits (mon … sun): a night whose whole window falls on them may have no rows without paging (QUIET_WEEKDAYS)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for day in var.quiet_weekdays : contains(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], day)])
    error_message = "quiet_weekdays: day names mon, tue, wed, thu, fri, sat, sun, e.g. [\"sat\", \"sun\"]."
  }
}

variable "runbook_url" {
  description = "Where the on-call engineer reads this repository's docs/runbook.md (e.g. its page in the code host); every alert links its own section (URL#anchor)."
  type        = string

  validation {
    condition     = can(regex("^https://[^#\\s]+$", var.runbook_url))
    error_message = "runbook_url must be an https URL without a #fragment (each alert adds its section's anchor)."
  }
}

variable "oncall_group" {
  description = "The on-call engineers' group, e.g. \"group:oncall@example.org\" (empty: none): read logs, metrics and Firestore, run the job with overrides (backfills), pause and resume the schedule, replay rows and drain dead letters (oncall.tf)."
  type        = string
  default     = ""

  validation {
    condition     = var.oncall_group == "" || can(regex("^group:[^@\\s]+@[^@\\s]+$", var.oncall_group))
    error_message = "oncall_group must be empty or \"group:NAME@DOMAIN\" (a Google group: people come and go, the grants stay)."
  }
}

variable "tf_state_bucket" {
  description = "The state bucket of docs/deploy.md step 1 (e.g. \"PROJECT-tfstate\"); the build account may read it for the build's terraform plan (-refresh=false). Empty: no grant, the build only validates."
  type        = string
  default     = ""
}

variable "static_egress" {
  description = "Whether the job and the replay function call out from one reserved static address (output egress_ip) through a VPC and Cloud NAT, for a registry that allow-lists callers (network.tf)."
  type        = bool
  default     = false
}

variable "egress_cidrs" {
  description = "static_egress only: the private ranges of the job's subnet (/26 or larger: Direct VPC egress takes two addresses a task) and of the function's connector (exactly /28)."
  type = object({
    job       = string
    connector = string
  })
  default = {
    job       = "10.8.0.0/26"
    connector = "10.8.1.0/28"
  }

  validation {
    condition     = can(cidrhost(var.egress_cidrs.job, 0)) && try(tonumber(split("/", var.egress_cidrs.job)[1]) <= 26, false)
    error_message = "egress_cidrs.job must be an IPv4 range of /26 or larger, e.g. \"10.8.0.0/26\"."
  }

  validation {
    condition     = can(cidrhost(var.egress_cidrs.connector, 0)) && try(split("/", var.egress_cidrs.connector)[1] == "28", false)
    error_message = "egress_cidrs.connector must be an IPv4 /28 (Serverless VPC Access), e.g. \"10.8.1.0/28\"."
  }
}

variable "schedule_paused" {
  description = "Whether the nightly schedule is paused. A new project starts with true and sets false after its first checked run (docs/deploy.md); on-call may pause it for longer than the next apply here (docs/runbook.md)."
  type        = bool
}
