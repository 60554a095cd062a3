# Log-based metrics from the job's structured logs (common/telemetry.py), a dashboard, alerts.
locals {
  job_logs = "resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${var.job_name}\""
  # The replay function (gen2: a Cloud Run service named as the function).
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.replay.name}\""
  # PromQL names of user log-based metrics: logging_googleapis_com:user_<name>
  rows_metric         = "logging_googleapis_com:user_${google_logging_metric.rows.name}"
  runs_metric         = "logging_googleapis_com:user_${google_logging_metric.runs.name}"
  drift_metric        = "logging_googleapis_com:user_${google_logging_metric.reconcile_drift.name}"
  alert_documentation = "See docs/runbook.md in the phonesync repository, section of this alert's name."
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

resource "google_logging_metric" "report_failures" {
  name   = "phonesync_report_failures"
  filter = "${local.job_logs} AND jsonPayload.event=\"report_failed\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
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
  })
}

resource "google_monitoring_alert_policy" "execution_failed" {
  display_name          = "phonesync: execution failed"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
  }
  conditions {
    display_name = "a Cloud Run execution of the job failed"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${var.job_name}\" AND metric.type=\"run.googleapis.com/job/completed_execution_count\" AND metric.labels.result=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_DELTA"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "no_finished_run" {
  display_name          = "phonesync: no finished run by 23:45"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
  }
  conditions {
    display_name = "no run_finished (succeeded, needs_action or partial) since 22:45 WIB, checked 23:45-23:59 WIB"
    condition_prometheus_query_language {
      # 16:45-16:59 UTC is 23:45-23:59 Asia/Jakarta (UTC+7, no DST). A partial run's deferred
      # rows are the replay function's to retry: no page for them here; the dead-letter alert
      # pages when it gives up. Rows needing officers go to the report tab, not to on-call.
      query               = "(vector(1) and on() (hour() == 16 and minute() >= 45)) unless on() (sum(increase(${local.runs_metric}{status=~\"succeeded|needs_action|partial\"}[1h])) > 0)"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "failure_ratio" {
  display_name          = "phonesync: failure ratio above threshold"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
  }
  conditions {
    display_name = "deferred + error rows over all rows, last hour"
    condition_prometheus_query_language {
      query               = "sum(increase(${local.rows_metric}{source=\"job\",status=~\"deferred|error\"}[1h])) / sum(increase(${local.rows_metric}{source=\"job\"}[1h])) > ${var.failure_ratio_threshold}"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "rejected_ratio" {
  display_name          = "phonesync: rejected rows above threshold"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
  }
  conditions {
    display_name = "rows rejected by the sheet rules (invalid_*) over all rows with an outcome line, last hour"
    condition_prometheus_query_language {
      # An abnormal share means the sheet itself changed (a column turned into numbers, dates
      # typed another way), not a few officers' typos: those go to the report tab.
      query               = "sum(increase(${local.rows_metric}{source=\"job\",status=~\"invalid_date|invalid_nik|invalid_phone\"}[1h])) / sum(increase(${local.rows_metric}{source=\"job\"}[1h])) > ${var.rejected_ratio_threshold}"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  display_name          = "phonesync: dead-letter backlog"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
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
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
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
  display_name          = "phonesync: run not finished ${var.max_run_minutes} minutes after 23:00"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
  }
  conditions {
    display_name = "the nightly run has not ended ${var.max_run_minutes} minutes after 23:00 WIB"
    condition_prometheus_query_language {
      # 16:MM UTC = 23:MM WIB; between max_run_minutes and 45 past, no run ended (run_finished or
      # run_failed) in the last 45 minutes. The window must reach back to 23:00 at every minute
      # checked (at 23:44 it starts 22:59): a shorter one would page at 23:4x for a run that
      # finished at 23:05. variables.tf keeps max_run_minutes below 45.
      query               = "(vector(1) and on() (hour() == 16 and minute() >= ${var.max_run_minutes} and minute() < 45)) unless on() (sum(increase(${local.runs_metric}[45m])) > 0)"
      duration            = "0s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "run_too_long" {
  display_name          = "phonesync: run longer than ${var.max_run_minutes} minutes"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
  }
  conditions {
    display_name = "any run (also a manual rerun) took longer than ${var.max_run_minutes} minutes"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_job\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.run_duration.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.max_run_minutes * 60
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }
}

# Secret Manager publishes SECRET_ROTATE on the rotation topic when the FHIR key is due; the
# subscription keeps that notice until someone acknowledges it, and this policy pages meanwhile.
resource "google_monitoring_alert_policy" "secret_rotation_due" {
  display_name          = "phonesync: FHIR API key rotation due"
  combiner              = "OR"
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
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
  notification_channels = var.notification_channels
  documentation {
    content = local.alert_documentation
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
