"""Deferred rows as Pub/Sub messages for the replay function.

One message per row. The data (JSON) carries what a replay needs, including the NIK and the
phone: Pub/Sub is encrypted at rest and access is limited to the job and the function. The
attributes, visible in consoles and usable in subscription filters, carry no PII.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

import orjson

from common.errors import PhonesyncError


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

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: bytes) -> FailureMessage:
        """Parse and validate; ValueError names what is wrong (never the NIK or phone)."""
        try:
            data: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ValueError("message data is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("message data is not a JSON object")
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
        for name in ("run_date", "sheet_date"):
            try:
                date.fromisoformat(data[name])
            except ValueError:
                raise ValueError(f"message {name} is not YYYY-MM-DD") from None
        if not (len(data["nik"]) == 16 and data["nik"].isdigit()):
            raise ValueError("message nik is not 16 digits")
        if not data["phone"].startswith("+62"):
            raise ValueError("message phone is not E.164 (+62…)")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def attributes(self) -> dict[str, str]:
        return {"run_date": self.run_date, "row": str(self.row), "reason_kind": "deferred"}


def topic_path(project: str, topic: str) -> str:
    """``projects/P/topics/T`` from a bare topic id or a full path."""
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


class FailurePublisher:
    """Publishes failure messages in batches and waits until Pub/Sub has every one."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            client = pubsub_v1.PublisherClient(
                batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.05)
            )
        self.client = client

    def publish_many(self, topic: str, messages: Sequence[FailureMessage]) -> int:
        futures = [self.client.publish(topic, m.to_json(), **m.attributes()) for m in messages]
        failed = 0
        for future in futures:
            try:
                future.result(timeout=60)
            except Exception:  # every publish error means the same: retry the task
                failed += 1
        if failed:
            raise PublishError(
                f"{failed} of {len(messages)} failure messages were not published to {topic}"
            )
        return len(messages)
