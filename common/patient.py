"""Rules for changing a Patient resource: find it by NIK, set its mobile phone, bump its version.

These rules are shared by the offline transform, the FHIR pipeline and the FHIR simulator, so a
patient is changed the same way whichever path touches it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"

# Indonesia's western zone (WIB) has been UTC+7 without daylight saving since 1964, so a fixed
# offset is exact and needs no tz database in a slim container image.
JAKARTA = timezone(timedelta(hours=7), "WIB")

_TRAILING_DIGITS = re.compile(r"^(.*?)(\d+)$")

Resource = dict[str, Any]


def bump_version_id(version_id: object) -> str:
    """Next ``meta.versionId``, keeping prefix and zero padding: ``v001``→``v002``, ``7``→``8``.

    A missing id becomes ``1``; an id without trailing digits gets ``1`` appended.
    """
    if version_id is None or version_id == "":
        return "1"
    text = str(version_id)
    match = _TRAILING_DIGITS.match(text)
    if match is None:
        return f"{text}1"
    prefix, digits = match.groups()
    return f"{prefix}{int(digits) + 1:0{len(digits)}d}"


def jakarta_now_iso() -> str:
    """Now in Asia/Jakarta, ISO 8601 with microseconds and offset (``…T23:45:00.123456+07:00``)."""
    return datetime.now(JAKARTA).isoformat(timespec="microseconds")


def patient_niks(resource: Resource) -> list[str]:
    """The NIK values of a Patient (identifiers with the kemkes NIK system)."""
    return [
        str(ident["value"])
        for ident in resource.get("identifier") or ()
        if isinstance(ident, dict) and ident.get("system") == NIK_SYSTEM and "value" in ident
    ]
