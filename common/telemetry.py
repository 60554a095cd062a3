"""Structured logs for Cloud Logging: one JSON object per line with ``severity`` and ``event``.

google-cloud-logging's ``StructuredLogHandler`` writes the JSON Cloud Run's agent ingests, so
``jsonPayload.event``, ``jsonPayload.status`` … are queryable and feed the log-based metrics in
terraform/monitoring.tf. Every record passes a redaction filter as a last line of defence:
callers log masked values, and anything that still looks like a NIK or a phone is blanked.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from google.cloud.logging_v2.handlers import StructuredLogHandler

from common.privacy import redact

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


def configure_logging(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send phonesync's logs as structured JSON to ``stream`` (default stdout)."""
    handler = StructuredLogHandler(stream=stream or sys.stdout)  # type: ignore[no-untyped-call]
    handler.addFilter(RedactingFilter())
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


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
