"""What a FHIR server says it supports: its CapabilityStatement (``GET [base]/metadata``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: What a row needs of the server's Patient: the NIK search, and a way to write (see
#: :meth:`ServerCapabilities.write_interaction`).
NEEDED_PATIENT_INTERACTIONS = ("search-type",)
#: How a Patient is written: PUT (``update``) or JSON Patch (``patch``).
Write = Literal["update", "patch"]
_R4 = re.compile(r"4\.0\.\d+")


@dataclass(frozen=True, slots=True)
class ServerCapabilities:
    """The parts of a CapabilityStatement phonesync acts on."""

    fhir_version: str
    #: ``rest[mode=server].interaction[].code``: whole-system interactions (``batch`` …).
    system_interactions: frozenset[str]
    #: ``rest[mode=server].resource[type=Patient].interaction[].code`` (``search-type`` …).
    patient_interactions: frozenset[str]

    @property
    def batch(self) -> bool:
        """The server accepts ``POST [base]`` with a Bundle of type ``batch``."""
        return "batch" in self.system_interactions

    def write_interaction(self, wanted: str = "auto") -> Write | None:
        """How to write a Patient here for ``FHIR_WRITE`` = ``wanted``: ``auto`` takes
        ``update`` when listed, else ``patch`` when listed; ``update`` / ``patch`` take that
        one if listed. None when the server lists no such interaction."""
        for write in ("update", "patch") if wanted == "auto" else (wanted,):
            if write == "update" and "update" in self.patient_interactions:
                return "update"
            if write == "patch" and "patch" in self.patient_interactions:
                return "patch"
        return None

    def unfit_because(self, write: str = "auto") -> str | None:
        """Why phonesync cannot sync against this server; None for FHIR R4 (4.0.x) with Patient
        search and the write ``write`` (``FHIR_WRITE``) asks for: ``auto`` is content with
        either update or patch (Patient read is only needed after a conflict, so not
        required)."""
        if not _R4.fullmatch(self.fhir_version):
            return f"fhirVersion is {self.fhir_version[:32] or '(missing)'}, not R4 (4.0.x)"
        missing = [c for c in NEEDED_PATIENT_INTERACTIONS if c not in self.patient_interactions]
        if self.write_interaction(write) is None:
            missing.append("update and patch" if write == "auto" else write)
        if missing:
            return "Patient lacks " + " and ".join(missing)
        return None


def parse_capability_statement(body: object) -> ServerCapabilities:
    """The capabilities in ``body``; ``ValueError`` when it is not a CapabilityStatement."""
    if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
        raise ValueError("the answer is not a CapabilityStatement")
    system: set[str] = set()
    patient: set[str] = set()
    for rest in _dicts(body.get("rest")):
        if rest.get("mode") != "server":
            continue
        system |= _codes(rest.get("interaction"))
        for resource in _dicts(rest.get("resource")):
            if resource.get("type") == "Patient":
                patient |= _codes(resource.get("interaction"))
    version = body.get("fhirVersion")
    return ServerCapabilities(
        fhir_version=version if isinstance(version, str) else "",
        system_interactions=frozenset(system),
        patient_interactions=frozenset(patient),
    )


def _dicts(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _codes(interactions: object) -> set[str]:
    return {str(i["code"]) for i in _dicts(interactions) if isinstance(i.get("code"), str)}
