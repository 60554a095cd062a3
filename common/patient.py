"""Rules for changing a Patient: find it by NIK, set its mobile phone, offline bump its version.

These rules are shared by the offline transform, the FHIR pipeline and the FHIR simulator, so a
patient is changed the same way whichever path touches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.outcomes import Status
from common.phones import Phone, PhoneFormat, holds

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"

Resource = dict[str, Any]


def bump_version_id(version_id: object) -> str:
    """Next ``meta.versionId``, keeping prefix and zero padding: ``v001``→``v002``, ``7``→``8``.

    A missing id becomes ``1``; an id without trailing digits gets ``1`` appended.
    """
    if version_id is None or version_id == "":
        return "1"
    text = str(version_id)
    prefix = text.rstrip("0123456789")
    digits = text[len(prefix) :]
    if not digits:
        return f"{text}1"
    return f"{prefix}{int(digits) + 1:0{len(digits)}d}"


def patient_niks(resource: Resource) -> list[str]:
    """The NIK values of a Patient (identifiers with the kemkes NIK system)."""
    return [
        str(ident["value"])
        for ident in resource.get("identifier") or ()
        if isinstance(ident, dict) and ident.get("system") == NIK_SYSTEM and "value" in ident
    ]


def mobile_phone_entry(resource: Resource) -> dict[str, Any] | None:
    """The first ``telecom`` entry with ``system=phone, use=mobile``, if any."""
    telecom = resource.get("telecom") or ()
    index = _mobile_index(telecom)
    return None if index is None else telecom[index]


def _mobile_index(telecom: Sequence[object]) -> int | None:
    for index, entry in enumerate(telecom):
        if (
            isinstance(entry, dict)
            and entry.get("system") == "phone"
            and entry.get("use") == "mobile"
        ):
            return index
    return None


def with_mobile_phone(resource: Resource, value: str, last_updated: str | None) -> Resource:
    """A copy of ``resource`` whose mobile phone is ``value``.

    An existing ``phone/mobile`` entry keeps its other keys and its place; otherwise one is
    appended. Every other telecom entry and every other field stays as it was. Only the parts
    that change are copied, so an unchanged subtree is shared with the input.

    ``meta``: with ``last_updated`` (the offline transform, which plays the server's part), the
    version is bumped and ``lastUpdated`` set, as the reference output does. With ``None`` (the
    live path) ``versionId`` and ``lastUpdated`` are left out: the server assigns them, and the
    version read travels only as ``If-Match``. Other ``meta`` keys (profile, tags) are kept.
    """
    telecom = list(resource.get("telecom") or ())
    index = _mobile_index(telecom)
    if index is None:
        telecom.append({"system": "phone", "use": "mobile", "value": value})
    else:
        telecom[index] = {**telecom[index], "value": value}
    updated = {**resource, "telecom": telecom}
    meta = dict(resource.get("meta") or {})
    if last_updated is None:
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
    else:
        meta["versionId"] = bump_version_id(meta.get("versionId"))
        meta["lastUpdated"] = last_updated
    if meta:
        updated["meta"] = meta
    else:
        updated.pop("meta", None)
    return updated


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with the patients a NIK search found. ``resource`` is set only to write."""

    status: Status
    reason: str = ""
    patient_id: str | None = None
    resource: Resource | None = None


def decide(
    matches: Sequence[Resource], phone: Phone, fmt: PhoneFormat, last_updated: str | None = None
) -> Decision:
    """The one rule every mode applies to a winning row and the patients carrying its NIK.

    ``last_updated``: see :func:`with_mobile_phone` (``None`` on the live path).
    """
    if not matches:
        return NOT_FOUND
    if len(matches) > 1:
        return ambiguous([patient_id(m) for m in matches])
    return decide_for(matches[0], phone, fmt, last_updated)


NOT_FOUND = Decision(Status.NOT_FOUND, "no patient in the registry has this NIK")


def ambiguous(patient_ids: Sequence[str | None]) -> Decision:
    ids = ", ".join(str(i) for i in patient_ids)
    return Decision(
        Status.AMBIGUOUS, f"{len(patient_ids)} patients carry this NIK ({ids}); none updated"
    )


def decide_for(
    patient: Resource, phone: Phone, fmt: PhoneFormat, last_updated: str | None = None
) -> Decision:
    """The decision for the one patient carrying the row's NIK."""
    pid = patient_id(patient)
    current = mobile_phone_entry(patient)
    if current is not None and holds(str(current.get("value", "")), phone):
        return Decision(Status.UNCHANGED, "the patient already has this number", pid)
    updated = with_mobile_phone(patient, phone.formatted(fmt), last_updated)
    reason = "mobile phone replaced" if current is not None else "mobile phone added"
    return Decision(Status.UPDATED, reason, pid, updated)


def patient_id(patient: Resource) -> str | None:
    value = patient.get("id")
    return None if value is None else str(value)
