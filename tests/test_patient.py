"""How a patient resource changes: telecom entry, version, timestamp — and nothing else."""

import copy

import pytest

from common.outcomes import Status
from common.patient import bump_version_id, decide, with_mobile_phone
from common.phones import PhoneFormat, normalize_phone

NOW = "2025-09-23T23:45:00.123456+07:00"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("v001", "v002"),
        ("v009", "v010"),
        ("v999", "v1000"),
        ("7", "8"),
        ("009", "010"),
        (None, "1"),
        ("", "1"),
        ("abc", "abc1"),
        (3, "4"),
    ],
)
def test_version_id_keeps_prefix_and_padding(before: object, after: str) -> None:
    assert bump_version_id(before) == after


def patient(**extra: object) -> dict:  # type: ignore[type-arg]
    return {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "v001"}, **extra}


def test_adds_a_mobile_entry_and_creates_telecom_when_missing() -> None:
    decision = decide([patient()], normalize_phone("0812-3456-7890"), PhoneFormat.NATIONAL, NOW)
    assert decision.status is Status.UPDATED
    assert decision.resource is not None
    assert decision.resource["telecom"] == [
        {"system": "phone", "use": "mobile", "value": "081234567890"}
    ]
    assert decision.resource["meta"] == {"versionId": "v002", "lastUpdated": NOW}


def test_replaces_the_mobile_value_in_place_keeping_other_entries_and_keys() -> None:
    telecom = [
        {"system": "email", "value": "a@example.org"},
        {
            "system": "phone",
            "use": "mobile",
            "value": "081111111111",
            "rank": 1,
            "period": {"start": "2020"},
        },
        {"system": "phone", "use": "home", "value": "0215551234"},
    ]
    original = patient(telecom=telecom, gender="female")
    snapshot = copy.deepcopy(original)
    decision = decide([original], normalize_phone("082222222222"), PhoneFormat.E164, NOW)
    assert decision.resource is not None
    assert decision.resource["telecom"] == [
        telecom[0],
        {
            "system": "phone",
            "use": "mobile",
            "value": "+6282222222222",
            "rank": 1,
            "period": {"start": "2020"},
        },
        telecom[2],
    ]
    assert decision.resource["gender"] == "female"
    assert original == snapshot  # the input is never mutated


def test_same_number_in_another_spelling_is_unchanged_and_untouched() -> None:
    original = patient(telecom=[{"system": "phone", "use": "mobile", "value": "+6281234567890"}])
    decision = decide([original], normalize_phone("081234567890"), PhoneFormat.NATIONAL, NOW)
    assert decision.status is Status.UNCHANGED
    assert decision.resource is None
    assert decision.patient_id == "p1"


def test_not_found_and_ambiguous_update_nothing() -> None:
    phone = normalize_phone("081234567890")
    assert decide([], phone, PhoneFormat.NATIONAL, NOW).status is Status.NOT_FOUND
    twins = [patient(), {**patient(), "id": "p2"}]
    decision = decide(twins, phone, PhoneFormat.NATIONAL, NOW)
    assert decision.status is Status.AMBIGUOUS
    assert decision.resource is None
    assert "p1, p2" in decision.reason


def test_the_live_path_leaves_versionid_and_lastupdated_to_the_server() -> None:
    original = patient(meta={"versionId": "7", "lastUpdated": "x", "profile": ["p"]})
    decision = decide([original], normalize_phone("081234567890"), PhoneFormat.NATIONAL)
    assert decision.resource is not None
    assert decision.resource["meta"] == {"profile": ["p"]}  # other meta kept
    bare = decide([patient()], normalize_phone("081234567890"), PhoneFormat.NATIONAL)
    assert bare.resource is not None and "meta" not in bare.resource


def test_missing_meta_gets_version_one() -> None:
    updated = with_mobile_phone({"resourceType": "Patient", "id": "x"}, "081234567890", NOW)
    assert updated["meta"] == {"versionId": "1", "lastUpdated": NOW}
