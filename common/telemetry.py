"""phonesync's log lines: JSON for Cloud Logging on Cloud Run, short text for a person elsewhere.

On Cloud Run (and with ``LOG_FORMAT=json``) each line is one JSON object with ``severity`` and
``event``: google-cloud-logging's ``StructuredLogHandler`` writes what Cloud Run's agent ingests,
so ``jsonPayload.event``, ``jsonPayload.status`` … are queryable and feed the log-based metrics
in terraform/monitoring.tf. Elsewhere (a laptop, a terminal) a line is the time, the severity
when it is not INFO, and the message, on standard error. Every record passes a redaction
filter as a last line of defence, whatever the format: callers log masked values, and anything
that still looks like a NIK or a phone is blanked.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

from common.privacy import redact

#: ``LOG_FORMAT``: ``auto`` is ``json`` on Cloud Run and ``text`` elsewhere.
LogFormat = Literal["auto", "json", "text"]
#: Set by Cloud Run for a job's tasks (``CLOUD_RUN_JOB``, ``CLOUD_RUN_EXECUTION``) and for a
#: service's instances, gen2 functions included (``K_SERVICE``).
CLOUD_RUN_VARIABLES = ("CLOUD_RUN_JOB", "CLOUD_RUN_EXECUTION", "K_SERVICE")
LOGGER_NAME = "phonesync"
_logger = logging.getLogger(LOGGER_NAME)
_context: dict[str, Any] = {}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            record.json_fields = _redact_value(fields)
        return True


class HumanFormatter(logging.Formatter):
    """``22:01:03 row 7: deferred (…)``; ``warning:`` or ``error:`` before the message when the
    line is not INFO. The event's fields stay in the JSON lines: a person reads the message."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.formatTime(record, self.datefmt)} {level}{record.getMessage()}"


def on_cloud_run(env: Mapping[str, str] | None = None) -> bool:
    source = os.environ if env is None else env
    return any(source.get(name) for name in CLOUD_RUN_VARIABLES)


def writes_json(log_format: LogFormat) -> bool:
    """Whether ``log_format`` means JSON lines here (``auto``: on Cloud Run)."""
    return log_format == "json" or (log_format == "auto" and on_cloud_run())


def configure_logging(
    stream: TextIO | None = None, level: int = logging.INFO, *, log_format: LogFormat = "json"
) -> None:
    """Send phonesync's logs to ``stream``: JSON lines (default: stdout) or, as ``log_format``
    says, text for a person (default: stderr). Processes started by a person pass the
    ``LOG_FORMAT`` setting; the default suits Cloud Logging's processes and tests reading JSON."""
    handler: logging.Handler
    if writes_json(log_format):
        handler = _cloud_logging_handler(stream or sys.stdout)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(HumanFormatter())
    handler.addFilter(RedactingFilter())
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


def _cloud_logging_handler(stream: TextIO) -> logging.Handler:
    from google.cloud.logging_v2.handlers import StructuredLogHandler

    class CloudLoggingHandler(StructuredLogHandler):
        """Without the library's diagnostic line (``logging.googleapis.com/diagnostic``, its
        version, written before the first record): every line phonesync writes is its own."""

        def emit_instrumentation_info(self) -> None:
            pass

    return CloudLoggingHandler(stream=stream)  # type: ignore[no-untyped-call]


def bind(**fields: Any) -> None:
    """Fields added to every later log line (``run_date``, ``execution``, ``task_index``)."""
    _context.update(fields)


def reset_context() -> None:
    _context.clear()


def log_event(
    event: str, message: str = "", *, severity: int = logging.INFO, **fields: Any
) -> None:
    """Log one structured event. Pass masked NIKs/phones only (see :mod:`common.privacy`)."""
    payload = {**_context, "event": event, **fields}
    # stacklevel=2: the record's file, line and function (Cloud Logging's sourceLocation) are
    # the caller's, not this helper's.
    _logger.log(severity, message or event, extra={"json_fields": payload}, stacklevel=2)
