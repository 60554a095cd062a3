"""Test helpers: the FHIR simulator on loopback, loaded with the sample patients."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim._state import SimState
from sim.app import create_app
from sim.server import run_in_thread

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE_SHEET = EXAMPLES / "whatsapp-sheet.csv"
SAMPLE_BUNDLE = EXAMPLES / "patients-data.json"
API_KEY = "test-api-key"


def sample(key: str = "patients_before_phone_update") -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(SAMPLE_BUNDLE.read_text())[key]]


@dataclass
class RunningSim:
    url: str  # base URL without /fhir
    state: SimState

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"


@contextmanager
def simulator(patients: list[dict[str, Any]] | None = None, **options: Any) -> Iterator[RunningSim]:
    options.setdefault("api_key", API_KEY)
    app = create_app(copy.deepcopy(patients if patients is not None else sample()), **options)
    with run_in_thread(app) as url:
        yield RunningSim(url, app.state.sim)


def without_last_updated(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(patients)
    for p in out:
        p.get("meta", {}).pop("lastUpdated", None)
    return out
