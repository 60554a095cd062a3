"""The JSON Patch phonesync sends (``common.fhir._patch``): only telecom changes, every change is
guarded by a ``test``, ``replace-only`` uses nothing but ``replace`` and ``test``, and a refused
patch is told apart as a lost race or a fault.

Patches are applied by the simulator's RFC 6902 implementation (``sim/_patch.py``, which answers
as Medplum's router does; tests/test_medplum_patch.py checks the same on Medplum itself).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.fhir import FhirPatchUnexpressible, as_binary, patch_raced, telecom_patch
from common.patient import with_mobile_phone
from sim._patch import PatchError, apply_patch

MOBILE = {"system": "phone", "use": "mobile", "value": "081234567890"}
EMAIL = {"system": "email", "value": "dewi@example.org"}
HOME = {"system": "phone", "use": "home", "value": "0215551234"}


def patient(telecom: list[Any] | None, version: str | None = "v1") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"text": "DEWI"}],
        "birthDate": "1992-03-02",
    }
    if version is not None:
        resource["meta"] = {"versionId": version}
    if telecom is not None:
        resource["telecom"] = telecom
    return resource


def wanted(before: dict[str, Any], value: str = "089900001111") -> dict[str, Any]:
    return with_mobile_phone(before, value, None)


def test_a_mobile_entry_in_place_is_tested_whole_and_only_its_value_replaced() -> None:
    before = patient([EMAIL, MOBILE, HOME])
    document = telecom_patch(before, wanted(before))
    assert document == [
        {"op": "test", "path": "/telecom/1", "value": MOBILE},
        {"op": "replace", "path": "/telecom/1/value", "value": "089900001111"},
    ]
    assert telecom_patch(before, wanted(before), "replace-only") == document


def test_an_added_mobile_entry_is_appended_after_a_test_of_the_array() -> None:
    before = patient([EMAIL, HOME])
    new = {"system": "phone", "use": "mobile", "value": "089900001111"}
    assert telecom_patch(before, wanted(before)) == [
        {"op": "test", "path": "/telecom", "value": [EMAIL, HOME]},
        {"op": "add", "path": "/telecom/-", "value": new},
    ]
    assert telecom_patch(before, wanted(before), "replace-only") == [
        {"op": "test", "path": "/telecom", "value": [EMAIL, HOME]},
        {"op": "replace", "path": "/telecom", "value": [EMAIL, HOME, new]},
    ]


def test_no_telecom_is_added_after_a_test_of_the_version_and_refused_in_replace_only() -> None:
    before = patient(None, version="v7")
    new = [{"system": "phone", "use": "mobile", "value": "089900001111"}]
    assert telecom_patch(before, wanted(before)) == [
        {"op": "test", "path": "/meta/versionId", "value": "v7"},
        {"op": "add", "path": "/telecom", "value": new},
    ]
    # Without a version there is nothing to test: If-Match alone guards it.
    unversioned = patient(None, version=None)
    assert telecom_patch(unversioned, wanted(unversioned)) == [
        {"op": "add", "path": "/telecom", "value": new}
    ]
    with pytest.raises(FhirPatchUnexpressible, match="replace cannot create /telecom"):
        telecom_patch(before, wanted(before), "replace-only")


def test_a_mobile_entry_without_value_gets_one_added_or_is_replaced_whole() -> None:
    bare = {"system": "phone", "use": "mobile"}
    before = patient([bare])
    assert telecom_patch(before, wanted(before))[1:] == [
        {"op": "add", "path": "/telecom/0/value", "value": "089900001111"}
    ]
    assert telecom_patch(before, wanted(before), "replace-only")[1:] == [
        {"op": "replace", "path": "/telecom/0", "value": {**bare, "value": "089900001111"}}
    ]


def test_only_telecom_may_change() -> None:
    before = patient([MOBILE])
    with pytest.raises(ValueError, match="only change telecom"):
        telecom_patch(before, {**wanted(before), "gender": "female"})


def test_a_batch_entry_carries_the_patch_as_a_base64_binary() -> None:
    import base64
    import json

    document = telecom_patch(patient([MOBILE]), wanted(patient([MOBILE])))
    binary = as_binary(document)
    assert binary["resourceType"] == "Binary"
    assert binary["contentType"] == "application/json-patch+json"
    assert json.loads(base64.b64decode(binary["data"])) == document


def test_a_refusal_is_a_race_only_when_a_test_no_longer_holds() -> None:
    before = patient([EMAIL, MOBILE])
    document = telecom_patch(before, wanted(before))
    assert not patch_raced(document, before)  # refused for another reason: the row's error
    moved = patient([HOME, EMAIL, MOBILE])  # another writer inserted an entry: index 1 moved
    assert patch_raced(document, moved)
    changed = patient([EMAIL, {**MOBILE, "value": "081111111111"}])
    assert patch_raced(document, changed)
    fresh_version = patient(None, version="v8")
    assert patch_raced(telecom_patch(patient(None), wanted(patient(None))), fresh_version)
    assert not patch_raced(telecom_patch(patient(None), wanted(patient(None))), patient(None))


# -- the property: applied, a patch makes exactly the wanted patient ---------------------------

ENTRIES = st.sampled_from(
    [
        EMAIL,
        HOME,
        MOBILE,
        {"system": "phone", "use": "mobile", "value": "081299998888", "rank": 1},
        {"system": "phone", "use": "mobile"},
        {"system": "sms", "value": "0812"},
        {"system": "phone", "use": "work", "value": "0214445555"},
    ]
)
TELECOMS = st.one_of(st.none(), st.lists(ENTRIES, max_size=4))
VALUES = st.sampled_from(["081234567890", "089900001111", "081299998888"])


@given(TELECOMS, VALUES, st.sampled_from(["add-replace", "replace-only"]))
def test_applied_the_patch_makes_the_wanted_patient_and_nothing_else(
    telecom: list[Any] | None, value: str, ops: Any
) -> None:
    before = orjson.loads(orjson.dumps(patient(telecom)))  # as JSON: no shared entries
    after = wanted(before, value)
    try:
        document = telecom_patch(before, after, ops)
    except FhirPatchUnexpressible:
        assert telecom is None and ops == "replace-only"
        return
    if not document:  # the number was there already (decide calls that unchanged)
        assert after["telecom"] == before["telecom"]
        return
    patched = apply_patch(before, document, replace_only=ops == "replace-only")
    assert {k: v for k, v in patched.items() if k != "meta"} == {
        k: v for k, v in after.items() if k != "meta"
    }
    assert all(op["op"] in ("test", "replace") for op in document) or ops == "add-replace"
    # Every change is guarded: a test comes first, and a concurrent edit of what it changes
    # (another entry in front, or telecom replaced) makes the same patch fail.
    assert document[0]["op"] == "test"
    raced = {
        **before,
        "telecom": [HOME, *(before.get("telecom") or [])],
        "meta": {"versionId": "v2"},
    }
    with pytest.raises(PatchError, match="Test failed"):
        apply_patch(raced, document)
    assert patch_raced(document, raced)
