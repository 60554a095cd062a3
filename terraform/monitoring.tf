# Log-based metrics from the job's structured logs (common/telemetry.py), a dashboard, alerts.
locals {
  job_logs = "resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${var.job_name}\""
  # The replay function (gen2: a Cloud Run service named as the function).
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.replay.name}\""
  # PromQL names of user log-based metrics: logging_googleapis_com:user_<name>
  rows_metric  = "logging_googleapis_com:user_${google_logging_metric.rows.name}"
  runs_metric  = "logging_googleapis_com:user_${google_logging_metric.runs.name}"
  drift_metric = "logging_googleapis_com:user_${google_logging_metric.reconcile_drift.name}"

  # Each alert's section of docs/runbook.md (what it means, what to do, when it is over): its
  # heading's anchor as GitHub and GitLab make it, the policy's display name with default values.
  # Every policy links runbook_url#anchor (tests/test_terraform.py holds the two together).
  runbook_anchor = {
    execution_failed    = "phonesync-execution-failed"
    no_finished_run     = "phonesync-no-finished-run-45-minutes-after-the-scheduled-start"
    error_ratio         = "phonesync-error-ratio-above-threshold"
    rejected_ratio      = "phonesync-rejected-rows-above-threshold"
    dead_letter_backlog = "phonesync-dead-letter-backlog"
    fhir_errors         = "phonesync-fhir-4295xx-rate-high"
    run_not_finished    = "phonesync-run-not-finished-25-minutes-after-the-scheduled-start"
    run_too_long        = "phonesync-run-longer-than-25-minutes"
    secret_rotation_due = "phonesync-fhir-api-key-rotation-due"
    empty_window        = "phonesync-no-rows-in-the-window"
    replay_malformed    = "phonesync-replay-dropped-malformed-messages"
    runs_unsettled      = "phonesync-runs-left-partial"
    scheduler_failed    = "phonesync-scheduler-could-not-start-the-job"
    reconcile_drift     = "phonesync-reconcile-found-drift"
    missed_night        = "phonesync-missed-night"
    officer_wait        = "phonesync-rows-waiting-on-an-officer-too-long"
  }

  # How long an incident stays open without data. A night's page closes before the next night,
  # so that the same fault then pages again (an open incident notifies nobody); a standing
  # backlog's page stays open as long as Google allows, closing only when the backlog is gone.
  nightly_auto_close = "43200s"  # 12 hours
  backlog_auto_close = "604800s" # 7 days, the maximum
}

# One `row_outcome` line per row's end (common/recording.py), from the job (source "job") and
# from the replay function (source "replay"), so replayed rows are counted too.
resource "google_logging_metric" "rows" {
  name   = "phonesync_rows"
  filter = "((${local.job_logs}) OR (${local.function_logs})) AND jsonPayload.event=\"row_outcome\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "status"
      value_type = "STRING"
    }
    labels {
      key        = "source"
      value_type = "STRING"
    }
  }
  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
    source = "EXTRACT(jsonPayload.source)"
  }
}

# A failure message the replay function drops: not one its run planned (version skew between
# the job and the function, a hand-made message). Acknowledged, never recorded: counted here.
resource "google_logging_metric" "replay_malformed" {
  name   = "phonesync_replay_malformed"
  filter = "${local.function_logs} AND jsonPayload.event=\"replay_malformed\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

# One line per run that ended: `run_finished` (succeeded / partial / failed) or `run_failed`
# (task 0 could not start the run: sheet unreadable, bad input), both carrying `status`.
# `run_failed` is logged once per run: a retry of task 0 failing the same run again logs
# `run_failed_again`, which this filter leaves out.
resource "google_logging_metric" "runs" {
  name   = "phonesync_runs"
  filter = "${local.job_logs} AND (jsonPayload.event=\"run_finished\" OR jsonPayload.event=\"run_failed\")"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "status"
      value_type = "STRING"
    }
  }
  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
  }
}

resource "google_logging_metric" "run_duration" {
  name            = "phonesync_run_duration"
  filter          = "${local.job_logs} AND jsonPayload.event=\"run_finished\""
  value_extractor = "EXTRACT(jsonPayload.duration_seconds)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 1.5
      scale              = 10
    }
  }
}

resource "google_logging_metric" "fhir_retries" {
  name   = "phonesync_fhir_retries"
  filter = "${local.job_logs} AND jsonPayload.event=\"fhir_retry\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "http_status"
      value_type = "STRING"
    }
  }
  label_extractors = {
    http_status = "EXTRACT(jsonPayload.http_status)"
  }
}

# A night whose window held no row although some date of it was not a quiet weekday
# (QUIET_WEEKDAYS): task 0's manifest_written says so (rows_expected), common/quiet_days.py.
resource "google_logging_metric" "empty_windows" {
  name   = "phonesync_empty_windows"
  filter = "${local.job_logs} AND jsonPayload.event=\"manifest_written\" AND jsonPayload.candidates=0 AND jsonPayload.decided=0 AND jsonPayload.rows_expected=true"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

# Earlier runs still partial when a later night's run ends (common/unsettled.py): one line per
# run, every night until it settles.
resource "google_logging_metric" "runs_unsettled" {
  name   = "phonesync_runs_unsettled"
  filter = "${local.job_logs} AND jsonPayload.event=\"run_unsettled\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

# Runs that took longer than max_run_minutes, read from the run's own line: the threshold is in
# the filter, so a 22-minute run never counts against 25 (a distribution's percentile would
# read a bucket spanning both).
resource "google_logging_metric" "runs_too_long" {
  name   = "phonesync_runs_too_long"
  filter = "${local.job_logs} AND jsonPayload.event=\"run_finished\" AND jsonPayload.duration_seconds>${var.max_run_minutes * 60}"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

# Cloud Scheduler logs each attempt to start the job; a failed one (the Run API refused the
# scheduler's account, the job is missing, the deadline passed) at severity ERROR.
resource "google_logging_metric" "scheduler_failures" {
  name   = "phonesync_scheduler_failures"
  filter = "resource.type=\"cloud_scheduler_job\" AND resource.labels.job_id=\"${google_cloud_scheduler_job.nightly.name}\" AND severity>=ERROR"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_logging_metric" "report_failures" {
  name   = "phonesync_report_failures"
  filter = "${local.job_logs} AND jsonPayload.event=\"report_failed\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

# A run that finished leaving no date unsynced: its window took in every date no earlier run
# covered (missed nights, within CATCH_UP_DAYS; docs/decisions.md, record 99). The missed-night
# alert waits for one.
resource "google_logging_metric" "nights_synced" {
  name   = "phonesync_nights_synced"
  filter = "${local.job_logs} AND jsonPayload.event=\"run_finished\" AND jsonPayload.unsynced_count=0"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

# The finishing task's `officer_rows` line, one per finished run: how many rows wait on a field
# officer, and since how many days the oldest of them waits.
resource "google_logging_metric" "officer_rows_waiting" {
  name            = "phonesync_officer_rows_waiting"
  filter          = "${local.job_logs} AND jsonPayload.event=\"officer_rows\""
  value_extractor = "EXTRACT(jsonPayload.waiting)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "officer_oldest_wait" {
  name            = "phonesync_officer_oldest_wait"
  filter          = "${local.job_logs} AND jsonPayload.event=\"officer_rows\""
  value_extractor = "EXTRACT(jsonPayload.oldest_wait_days)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "d"
  }
  bucket_options {
    linear_buckets {
      num_finite_buckets = 91
      width              = 1
      offset             = 0
    }
  }
}

resource "google_monitoring_dashboard" "phonesync" {
  dashboard_json = templatefile("${path.module}/dashboards/phonesync.json", {
    job_name               = var.job_name
    dead_letter_sub        = google_pubsub_subscription.dead_letter.name
    rows_metric            = google_logging_metric.rows.name
    runs_metric            = google_logging_metric.runs.name
    run_duration_metric    = google_logging_metric.run_duration.name
    fhir_retries_metric    = google_logging_metric.fhir_retries.name
    report_failures_metric = google_logging_metric.report_failures.name
    drift_metric           = google_logging_metric.reconcile_drift.name
    malformed_metric       = google_logging_metric.replay_malformed.name
    empty_windows_metric   = google_logging_metric.empty_windows.name
    unsettled_metric       = google_logging_metric.runs_unsettled.name
    scheduler_metric       = google_logging_metric.scheduler_failures.name
    officer_rows_metric    = google_logging_metric.officer_rows_waiting.name
    officer_wait_metric    = google_logging_metric.officer_oldest_wait.name
  })
}

resource "google_monitoring_alert_policy" "execution_failed" {
  display_name          = "phonesync: execution failed"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "A Cloud Run execution of the job failed after its retries: tonight's rows may not be synced. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.execution_failed})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.execution_failed}"
    }
  }
  conditions {
    display_name = "a Cloud Run execution of the job failed"
    condition_threshold {
      filter                  = "resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${var.job_name}\" AND metric.type=\"run.googleapis.com/job/completed_execution_count\" AND metric.labels.result=\"failed\""
      comparison              = "COMPARISON_GT"
      threshold_value         = 0
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_DELTA"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "no_finished_run" {
  display_name          = "phonesync: no finished run 45 minutes after the scheduled start"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "No run of tonight ended succeeded, needs_action or partial within 45 minutes of the scheduled start. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.no_finished_run})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.no_finished_run}"
    }
  }
  conditions {
    display_name = "no run_finished (succeeded, needs_action or partial) in the last hour, checked 45-59 minutes after the scheduled start"
    condition_prometheus_query_language {
      # hour() is UTC: schedule_utc_hour is the scheduled hour (scheduler.tf). A partial
      # run's deferred rows are the replay function's to retry: no page for them here; the
      # dead-letter alert pages when it gives up, "runs left partial" the next night. Rows
      # needing officers go to the report tab, not to on-call.
      query               = "(vector(1) and on() (hour() == ${local.schedule_utc_hour} and minute() >= 45)) unless on() (sum(increase(${local.runs_metric}{status=~\"succeeded|needs_action|partial\"}[1h])) > 0)"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "error_ratio" {
  display_name          = "phonesync: error ratio above threshold"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "More than error_ratio_threshold of the job's rows in the last hour (at least ratio_min_rows) ended error: the registry refuses them for good. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.error_ratio})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.error_ratio}"
    }
  }
  conditions {
    display_name = "rows ending error over all rows of the job, last hour, at least ratio_min_rows rows"
    condition_prometheus_query_language {
      # Errors only: deferred rows are the replay function's (dead-letter backlog, runs left
      # partial). The volume floor keeps one error among ten rows from paging.
      query               = "(sum(increase(${local.rows_metric}{source=\"job\",status=\"error\"}[1h])) / sum(increase(${local.rows_metric}{source=\"job\"}[1h])) > ${var.error_ratio_threshold}) and on() (sum(increase(${local.rows_metric}{source=\"job\"}[1h])) >= ${var.ratio_min_rows})"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "rejected_ratio" {
  display_name          = "phonesync: rejected rows above threshold"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "More than rejected_ratio_threshold of the job's rows in the last hour (at least ratio_min_rows) were rejected by the sheet rules: the sheet itself changed. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.rejected_ratio})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.rejected_ratio}"
    }
  }
  conditions {
    display_name = "rows rejected by the sheet rules (invalid_*) over all rows with an outcome line, last hour, at least ratio_min_rows rows"
    condition_prometheus_query_language {
      # An abnormal share means the sheet itself changed (a column turned into numbers, dates
      # typed another way), not a few officers' typos: those go to the report tab.
      query               = "(sum(increase(${local.rows_metric}{source=\"job\",status=~\"invalid_date|invalid_nik|invalid_phone\"}[1h])) / sum(increase(${local.rows_metric}{source=\"job\"}[1h])) > ${var.rejected_ratio_threshold}) and on() (sum(increase(${local.rows_metric}{source=\"job\"}[1h])) >= ${var.ratio_min_rows})"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  display_name          = "phonesync: dead-letter backlog"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.backlog_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "Failure messages exhausted their replays and wait in the dead-letter subscription: those rows are not in the registry. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.dead_letter_backlog})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.dead_letter_backlog}"
    }
  }
  conditions {
    display_name = "undelivered messages in the dead-letter subscription"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "fhir_errors" {
  display_name          = "phonesync: FHIR 429/5xx rate high"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "The job retries many FHIR requests (429, 5xx, timeouts): the night runs longer, rows may be deferred. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.fhir_errors})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.fhir_errors}"
    }
  }
  conditions {
    display_name = "FHIR retries (429, 5xx, timeouts) per second"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_job\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.fhir_retries.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.fhir_retry_rate_threshold
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# Cloud Monitoring allows a PromQL condition only as a policy's single condition, so the
# time-of-day check and the duration check are two policies.
resource "google_monitoring_alert_policy" "run_not_finished" {
  display_name          = "phonesync: run not finished ${var.max_run_minutes} minutes after the scheduled start"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "No run has ended tonight max_run_minutes after the scheduled start: slow, stuck or never started. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.run_not_finished})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.run_not_finished}"
    }
  }
  conditions {
    display_name = "the nightly run has not ended max_run_minutes after the scheduled start"
    condition_prometheus_query_language {
      # Between max_run_minutes and 45 past the scheduled hour (UTC in PromQL), no run ended
      # (run_finished or run_failed) in the last 45 minutes. The window must reach back to the
      # start at every minute checked (at :44 it starts at :59 the hour before): a shorter one
      # would page at :4x for a run that finished at :05. variables.tf keeps max_run_minutes
      # below 45.
      query               = "(vector(1) and on() (hour() == ${local.schedule_utc_hour} and minute() >= ${var.max_run_minutes} and minute() < 45)) unless on() (sum(increase(${local.runs_metric}[45m])) > 0)"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "run_too_long" {
  display_name          = "phonesync: run longer than ${var.max_run_minutes} minutes"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "A run (the nightly one or a rerun) ended after more than max_run_minutes, by its own run_finished line. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.run_too_long})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.run_too_long}"
    }
  }
  conditions {
    display_name = "a run_finished line with duration_seconds above max_run_minutes × 60"
    condition_threshold {
      filter                  = "resource.type=\"cloud_run_job\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.runs_too_long.name}\""
      comparison              = "COMPARISON_GT"
      threshold_value         = 0
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# Secret Manager publishes SECRET_ROTATE on the rotation topic when the FHIR key is due; the
# subscription keeps that notice until someone acknowledges it, and this policy pages meanwhile.
resource "google_monitoring_alert_policy" "secret_rotation_due" {
  display_name          = "phonesync: FHIR API key rotation due"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.backlog_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "Secret Manager announced that fhir-api-key is due for rotation; the notice waits until acknowledged. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.secret_rotation_due})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.secret_rotation_due}"
    }
  }
  conditions {
    display_name = "an unacknowledged SECRET_ROTATE notice"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.secret_rotation_due.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "empty_window" {
  display_name          = "phonesync: no rows in the window"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "Tonight's window held no row although some date of it is a working day (QUIET_WEEKDAYS): a wrong tab or dates typed wrongly. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.empty_window})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.empty_window}"
    }
  }
  conditions {
    display_name = "a manifest_written line with no row in the window and rows_expected"
    condition_threshold {
      filter                  = "resource.type=\"cloud_run_job\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.empty_windows.name}\""
      comparison              = "COMPARISON_GT"
      threshold_value         = 0
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "replay_malformed" {
  display_name          = "phonesync: replay dropped malformed messages"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "The replay function dropped failure messages that their run never planned (version skew between job and function, a hand-made message): those rows are not replayed. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.replay_malformed})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.replay_malformed}"
    }
  }
  conditions {
    display_name = "replay_malformed lines of the replay function"
    condition_threshold {
      filter                  = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.replay_malformed.name}\""
      comparison              = "COMPARISON_GT"
      threshold_value         = 0
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "runs_unsettled" {
  display_name          = "phonesync: runs left partial"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "An earlier night's run is still partial a day later: rows still deferred or error, and nobody is replaying them. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.runs_unsettled})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.runs_unsettled}"
    }
  }
  conditions {
    display_name = "run_unsettled lines of the night's closing task"
    condition_threshold {
      filter                  = "resource.type=\"cloud_run_job\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.runs_unsettled.name}\""
      comparison              = "COMPARISON_GT"
      threshold_value         = 0
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "scheduler_failed" {
  display_name          = "phonesync: scheduler could not start the job"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "Cloud Scheduler's attempt to start the nightly job failed. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.scheduler_failed})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.scheduler_failed}"
    }
  }
  conditions {
    display_name = "Cloud Scheduler attempts of the nightly job logged at ERROR"
    condition_threshold {
      filter                  = "resource.type=\"cloud_scheduler_job\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.scheduler_failures.name}\""
      comparison              = "COMPARISON_GT"
      threshold_value         = 0
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# One `reconcile_drift` line per drifted NIK a reconcile found (common/reconcile.py), by class:
# missing, different, registry_newer, not_found, ambiguous, unchecked.
resource "google_logging_metric" "reconcile_drift" {
  name   = "phonesync_reconcile_drift"
  filter = "${local.job_logs} AND jsonPayload.event=\"reconcile_drift\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "class"
      value_type = "STRING"
    }
  }
  label_extractors = {
    class = "EXTRACT(jsonPayload.class)"
  }
}

resource "google_monitoring_alert_policy" "reconcile_drift" {
  display_name          = "phonesync: reconcile found drift"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "A reconcile found numbers the registry lost or another writer changed. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.reconcile_drift})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.reconcile_drift}"
    }
  }
  conditions {
    display_name = "NIKs whose number the registry lost or another writer changed, in the last hour's reconciles"
    condition_prometheus_query_language {
      # not_found and ambiguous reach the officers every night (report tab); these three mean the
      # registry no longer holds what phonesync wrote.
      query               = "sum(increase(${local.drift_metric}{class=~\"missing|different|registry_newer\"}[1h])) > ${var.reconcile_drift_threshold}"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

# A date stays unsynced (its night never ran, failed, or is older than the catch-up reaches)
# until a run covering it finishes: every finished run takes in the dates none covered, so the
# alert waits for a run that left none (`unsynced_count` 0 on its run_finished line). 24 h 45 min:
# a night's run ends by 23:45 (max_run_minutes < 45), so a normal night never opens it; it
# opens 24 h 45 min after the last such run and stays open, across midnights, until the next.
resource "google_monitoring_alert_policy" "missed_night" {
  display_name          = "phonesync: missed night"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  # A standing gap, like a backlog: open while any date stays unsynced, however many nights.
  alert_strategy {
    auto_close = local.backlog_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "No run that left every date synced has finished for 24 h 45 min: some date's rows are not in the registry (a night that never ran, failed, or a date older than CATCH_UP_DAYS). [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.missed_night})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.missed_night}"
    }
  }
  conditions {
    display_name = "no run leaving every date synced has finished for 24 h 45 min"
    condition_prometheus_query_language {
      query               = "vector(1) unless on() (sum(increase(logging_googleapis_com:user_${google_logging_metric.nights_synced.name}[1485m])) > 0)"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }
}

# Rows wait on field officers (the report tab lists them, with since when); this pages when the
# oldest has waited longer than officer_wait_alert_days. The metric has one point per finished
# run: missing data keeps the incident as it is, the next night's line closes it (or, like every
# night's page, auto_close within 12 hours: a row still waiting too long pages again the next
# night).
resource "google_monitoring_alert_policy" "officer_wait" {
  display_name          = "phonesync: rows waiting on an officer too long"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  alert_strategy {
    auto_close = local.nightly_auto_close
  }
  documentation {
    mime_type = "text/markdown"
    content   = "A row has waited on a field officer longer than officer_wait_alert_days: the officers' report tab lists it, with since when. [Runbook: what it means, what to do, when it is over](${var.runbook_url}#${local.runbook_anchor.officer_wait})"
    links {
      display_name = "Runbook"
      url          = "${var.runbook_url}#${local.runbook_anchor.officer_wait}"
    }
  }
  conditions {
    display_name = "the oldest row waiting on a field officer, in days"
    condition_threshold {
      filter                  = "resource.type=\"cloud_run_job\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.officer_oldest_wait.name}\""
      comparison              = "COMPARISON_GT"
      threshold_value         = var.officer_wait_alert_days
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }
  lifecycle {
    precondition {
      condition     = var.officer_wait_alert_days < var.action_days
      error_message = "officer_wait_alert_days must be below action_days: no row waits longer than action_days after its date."
    }
  }
}
