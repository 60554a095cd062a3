"""Cloud Function (gen2) ``replay``: one deferred row per Pub/Sub message, retried until it lands.

Outcomes: applied / unchanged / stale / permanent error → recorded and acknowledged (return);
transient failure → raise, so Pub/Sub redelivers with backoff and, after the subscription's
maximum delivery attempts, moves the message to the dead-letter topic. A malformed message (not
a failure message, or not a row its run planned: see :mod:`common.replay`) is logged and
acknowledged, never recorded: retrying it could never succeed. A store that cannot be read is
transient like any other failure.

Deployed from a directory holding this file, ``common/`` and ``requirements.txt`` (see
cloudbuild.yaml, step ``package-function``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from common.config import load_settings
from common.failures import FailureMessage
from common.recording import RowResult
from common.registry import open_registry
from common.replay import (
    MalformedReplay,
    ReplayDeferred,
    log_malformed,
    must_retry,
    replay_item,
)
from common.runtime import ledger_key, open_store
from common.store import WorkItem
from common.sync import Ledger
from common.telemetry import bind, configure_logging, log_event

configure_logging()


def decode(event_data: Any) -> FailureMessage:
    """The failure message inside a Pub/Sub CloudEvent's ``data``; ValueError if malformed."""
    try:
        payload = base64.b64decode(event_data["message"]["data"], validate=True)
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a Pub/Sub message envelope: {type(exc).__name__}") from None
    return FailureMessage.from_json(payload)


@functions_framework.cloud_event
def replay(cloud_event: CloudEvent) -> None:
    try:
        message = decode(cloud_event.data)
    except ValueError as exc:
        log_event(
            "replay_malformed",
            f"dropped a malformed message: {exc}",
            severity=logging.ERROR,
            event_id=cloud_event["id"],
        )
        return
    bind(run_date=message.run_date, execution=message.execution, event_id=cloud_event["id"])
    try:
        result = asyncio.run(_replay(message))
    except MalformedReplay as exc:
        log_malformed(message.row, message.nik, exc)
        return
    if must_retry(result):  # recorded and logged (row_outcome) like every row's end
        outcome = result.outcome
        raise ReplayDeferred(f"row {outcome.row} still failing: {outcome.reason}")


async def _replay(message: FailureMessage) -> RowResult:
    config = load_settings(role="replay")
    store = open_store(config)
    item = WorkItem(
        row=message.row,
        date=message.sheet_date,
        nik=message.nik,
        phone=message.phone,
        read_at=message.read_at,
    )
    try:
        async with open_registry(config) as registry:
            return await replay_item(
                item,
                message.run_date,
                message.execution,
                registry.client,  # one row: its own requests, no batch Bundle
                store,
                Ledger(ledger_key(config)),
                config.phone_format,
            )
    finally:
        store.close()
