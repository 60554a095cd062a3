"""Deferred rows as Pub/Sub messages for the replay function.

One message per row. The data (JSON) carries what a replay needs, including the NIK and the
phone: Pub/Sub is encrypted at rest and access is limited to the job and the function. The
attributes, visible in consoles and usable in subscription filters, carry no PII.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson

from common.cloud_access import open_google_client
from common.errors import PhonesyncError

if TYPE_CHECKING:
    from common.store import WorkItem

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # a run's key: the form runs are stored by
#: What common.store.read_stamp writes: stamps compare as strings only in this one form.
_READ_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00")
PUBLISH_TIMEOUT = 60.0  # seconds to wait for each message's acknowledgement


class PublishError(PhonesyncError):
    """Some messages could not be published (the task should be retried)."""


@dataclass(frozen=True, slots=True)
class FailureMessage:
    run_date: str
    execution: str
    row: int
    nik: str
    phone: str  # E.164
    reason: str
    attempts: int
    sheet_date: str  # ISO date of the sheet row
    #: The read of the sheet the row comes from; "" in messages published before stamps.
    read_at: str = ""

    @classmethod
    def of(
        cls, item: WorkItem, run_date: str, execution: str, reason: str, attempts: int
    ) -> FailureMessage:
        """The message for a row of ``execution``'s run of ``run_date`` that must be replayed."""
        return cls(
            run_date=run_date,
            execution=execution,
            row=item.row,
            nik=item.nik,
            phone=item.phone,
            reason=reason,
            attempts=attempts,
            sheet_date=item.date,
            read_at=item.read_at,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: bytes) -> FailureMessage:
        """Parse and check the message's shape; ValueError names what is wrong (never the NIK or
        phone). Its row (NIK, phone, sheet date) is checked by the replay against the sheet's
        rules and the run's manifest (:func:`common.replay.replay_item`)."""
        try:
            data: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ValueError("message data is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("message data is not a JSON object")
        data.setdefault("read_at", "")  # optional: older messages may be in flight
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"message lacks {', '.join(missing)}")
        types = {"row": int, "attempts": int}
        wrong = [
            f.name
            for f in fields(cls)
            if not isinstance(data[f.name], types.get(f.name, str))
            or isinstance(data[f.name], bool)
        ]
        if wrong:
            raise ValueError(f"message has fields of the wrong type: {', '.join(wrong)}")
        if not _ISO_DATE.fullmatch(data["run_date"]):
            raise ValueError("message run_date is not YYYY-MM-DD")
        if data["read_at"] and not _READ_STAMP.fullmatch(data["read_at"]):
            raise ValueError("message read_at is not a read stamp (UTC, microseconds)")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def attributes(self) -> dict[str, str]:
        """For subscription filters and consoles: no NIK, no phone."""
        return {"run_date": self.run_date, "row": str(self.row), "reason_kind": "deferred"}


def topic_path(project: str, topic: str) -> str:
    """``projects/P/topics/T`` from a bare topic id or a full path (returned as it is)."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == "topics" and all(parts):
        return topic
    if not topic or "/" in topic:
        raise ValueError(f"not a topic id or projects/…/topics/… path: {topic!r}")
    if not project:
        raise ValueError(f"topic {topic!r} is a bare id: a project is needed")
    return f"projects/{project}/topics/{topic}"


class FailurePublisher:
    """Publishes failure messages in batches and waits until Pub/Sub has every one.

    ``project`` resolves bare topic ids (default: ``GOOGLE_CLOUD_PROJECT``); ``client`` is a
    ``pubsub_v1.PublisherClient`` (default: one batching up to 500 messages or 50 ms).
    """

    def __init__(self, client: Any = None, *, project: str | None = None) -> None:
        if client is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            client = open_google_client(
                "Pub/Sub",
                lambda: pubsub_v1.PublisherClient(
                    batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.05)
                ),
                emulator="PUBSUB_EMULATOR_HOST",
            )
        self.client = client
        self.project = project if project is not None else os.environ.get("GOOGLE_CLOUD_PROJECT")

    def publish_many(self, topic: str, messages: Sequence[FailureMessage]) -> int:
        """Publish one message per row to ``topic`` (an id or a full path); returns how many.

        Raises :class:`PublishError` when any message was not accepted, after waiting for all.
        """
        path = topic_path(self.project or "", topic)
        futures = [self.client.publish(path, m.to_json(), **m.attributes()) for m in messages]
        failed = 0
        first = ""
        for future in futures:
            try:
                future.result(timeout=PUBLISH_TIMEOUT)
            except Exception as exc:  # every publish error means the same: retry the task
                failed += 1
                first = first or f"{type(exc).__name__}: {exc}"
        if failed:
            raise PublishError(
                f"{failed} of {len(messages)} failure messages were not published to {path}"
                f" (first: {first[:300]})"
            )
        return len(messages)
