"""Deferred rows travel to the replay function as Pub/Sub messages (real emulator)."""

from typing import Any

import pytest
from google.cloud import pubsub_v1

from common.failures import FailureMessage, FailurePublisher, topic_path
from tests.emulators import EmulatorProject

MESSAGE = FailureMessage(
    run_date="2025-09-23",
    execution="phonesync-abc",
    row=7,
    nik="3171044203920001",
    phone="+6281234567890",
    reason="GET Patient search: HTTP 503 after 6 attempt(s)",
    attempts=6,
    sheet_date="2025-09-23",
)


def test_published_messages_are_pulled_back_intact(pubsub_emulator: EmulatorProject) -> None:
    gcp_project = pubsub_emulator.project
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = topic_path(gcp_project, "phonesync-failures")
    subscription = subscriber.subscription_path(gcp_project, "replay")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    messages = [MESSAGE, _with_row(MESSAGE, 8), _with_row(MESSAGE, 9)]
    assert FailurePublisher(publisher).publish_many(topic, messages) == 3
    pulled = subscriber.pull(
        subscription=subscription, max_messages=10, timeout=10
    ).received_messages
    assert sorted(FailureMessage.from_json(m.message.data).row for m in pulled) == [7, 8, 9]
    first = next(m.message for m in pulled if m.message.attributes["row"] == "7")
    assert FailureMessage.from_json(first.data) == MESSAGE
    assert dict(first.attributes) == {
        "run_date": "2025-09-23",
        "row": "7",
        "reason_kind": "deferred",
    }
    assert "3171044203920001" not in str(dict(first.attributes))


def _with_row(message: FailureMessage, row: int) -> FailureMessage:
    return FailureMessage(
        **{**{f: getattr(message, f) for f in message.__dataclass_fields__}, "row": row}
    )


def test_topic_path_accepts_an_id_or_a_path() -> None:
    assert topic_path("p", "t") == "projects/p/topics/t"
    assert topic_path("p", "projects/q/topics/t") == "projects/q/topics/t"
    assert topic_path("", "projects/q/topics/t") == "projects/q/topics/t"
    for bad in ("", "a/b", "projects/q/subscriptions/t", "projects//topics/t"):
        with pytest.raises(ValueError, match="not a topic id"):
            topic_path("p", bad)
    with pytest.raises(ValueError, match="a project is needed"):
        topic_path("", "t")


def test_a_bare_topic_id_is_resolved_with_the_publishers_project(
    pubsub_emulator: EmulatorProject,
) -> None:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = topic_path(pubsub_emulator.project, "bare")
    subscription = subscriber.subscription_path(pubsub_emulator.project, "bare-replay")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    sent = FailurePublisher(publisher, project=pubsub_emulator.project)
    assert sent.publish_many("bare", [MESSAGE]) == 1
    assert sent.publish_many("bare", []) == 0
    pulled = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
    assert [FailureMessage.from_json(m.message.data) for m in pulled.received_messages] == [MESSAGE]


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"run_date": "2025-09-23"}', "lacks execution"),
        (MESSAGE.to_json().replace(b'"row":7', b'"row":"7"'), "wrong type: row"),
        (MESSAGE.to_json().replace(b'"2025-09-23"', b'"23-09-2025"'), "run_date is not YYYY-MM-DD"),
        (
            MESSAGE.to_json().replace(b'"run_date":"2025-09-23"', b'"run_date":"20250923"'),
            "run_date is not YYYY-MM-DD",
        ),
        # NIK, phone and sheet date: the sheet's rules, checked by the replay
        # (tests/test_replay_function.py)
        (MESSAGE.to_json().replace(b'"attempts":6', b'"attempts":true'), "wrong type: attempts"),
        (b"", "not JSON"),
    ],
)
def test_malformed_messages_are_refused_clearly(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as exc:
        FailureMessage.from_json(payload)
    assert "3171044203920001" not in str(exc.value)


def test_a_failed_publish_is_an_error_for_the_task() -> None:
    class Broken:
        def publish(self, topic: str, data: bytes, **attrs: Any) -> Any:
            class Future:
                def result(self, timeout: float) -> None:
                    raise RuntimeError("unavailable")

            return Future()

    from common.failures import PublishError

    with pytest.raises(PublishError, match=r"1 of 1 .* RuntimeError: unavailable"):
        FailurePublisher(Broken()).publish_many("projects/p/topics/t", [MESSAGE])
