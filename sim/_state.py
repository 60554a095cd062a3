"""The simulator's patients and fault controls: what tests and the demo steer."""

from __future__ import annotations

import asyncio
import copy
import math
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common.patient import bump_version_id
from sim.sheets_tabs import SheetTabs

Resource = dict[str, Any]


class TokenBucket:
    """Requests/s the server accepts; the rest get 429 with the wait until a token is free."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock()

    def take(self, cost: float = 1.0) -> float:
        """0 when admitted, else seconds until a token is available.

        A request costing more than one token (a batch counted by its entries) is admitted
        while one token is left and runs the bucket into debt: later requests wait it off.
        """
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= cost
            return 0.0
        return (1 - self.tokens) / self.rate


class SimState:
    """Patients indexed by id and by (identifier system, value), plus knobs for faults."""

    def __init__(
        self,
        patients: list[Resource],
        *,
        api_key: str | None = None,
        latency_ms: float = 0.0,
        error_rate: float = 0.0,
        rate_limit: float | None = None,
        sheet_values: list[list[str]] | None = None,
        seed: int | None = None,
        batch: bool = True,
        entry_cost_ms: float = 0.0,
        rate_limit_entries: bool = False,
        page_size: int = 20,
        oauth_client: tuple[str, str] | None = None,
        token_ttl: float = 3600.0,
        write: str = "update-and-patch",
        patch_ops: str = "add-replace",
    ) -> None:
        self.order: list[str] = []
        self.patients: dict[str, Resource] = {}
        self.index: dict[tuple[str, str], set[str]] = {}
        self.load(patients)
        self.api_key = api_key
        #: Bearer mode: (client id, secret) the token endpoint accepts; FHIR needs its tokens.
        self.oauth_client = oauth_client
        self.token_ttl = token_ttl
        self.tokens: dict[str, float] = {}  # token → expiry (time.monotonic())
        self.issued_tokens: list[str] = []
        #: Every token request: its query string and the names of its form fields.
        self.token_calls: list[tuple[str, list[str]]] = []
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.bucket = TokenBucket(rate_limit) if rate_limit else None
        self.sheet_values = sheet_values
        #: Serve ``POST [base]`` batch Bundles (and list ``batch`` in the CapabilityStatement).
        self.batch = batch
        #: Extra time a batch Bundle takes per entry, on top of the per-request latency.
        self.entry_cost_ms = entry_cost_ms
        #: The rate limit counts a batch Bundle's entries (a FHIR-aware limit), not the request.
        self.rate_limit_entries = rate_limit_entries
        #: Patient writes served (and listed in the CapabilityStatement): ``update-and-patch``,
        #: ``patch-only`` (PUT answers 405, as the registry of the issue) or ``update-only``.
        self.writes_update = write != "patch-only"
        self.writes_patch = write != "update-only"
        #: JSON Patch ops taken: ``replace-only`` answers 400 to any op but replace and test.
        self.patch_replace_only = patch_ops == "replace-only"
        #: Apply writes whatever ``If-Match`` says (a registry that ignores it).
        self.ignore_if_match = False
        #: Search results per page when the request names no ``_count``.
        self.page_size = page_size
        #: Served at ``/metadata`` instead of the simulator's own CapabilityStatement (tests: a
        #: server of another FHIR version, one without Patient update).
        self.capability_statement: Resource | None = None
        self.rng = random.Random(seed)
        self.down = False
        self.fail_queue: list[int] = []
        #: Sheets API failures to answer next: status and ``Retry-After`` (None: no header).
        self.sheet_fail_queue: list[tuple[int, str | None]] = []
        self.sheet_tabs = SheetTabs()  # tabs written through the Sheets API (sim/sheets_tabs.py)
        #: The A1 range of every ``values.get``, in order.
        self.sheet_reads: list[str] = []
        self.delay_queue: list[float] = []
        self.entry_fail_queue: list[int] = []
        #: Patients whose every PUT or PATCH (request or batch entry) is refused with this status.
        self.refused_puts: dict[str, int] = {}
        self.before_put: Callable[[str, SimState], None] | None = None
        #: The body of every PUT received, as sent (what the client wrote, meta included).
        self.put_bodies: list[Resource] = []
        self.requests: Counter[str] = Counter()
        #: Batch entries by ``"METHOD status"``, as ``requests`` counts HTTP requests.
        self.entries: Counter[str] = Counter()
        self.puts_by_patient: Counter[str] = Counter()
        #: Successful JSON Patches by patient (requests or batch entries).
        self.patches_by_patient: Counter[str] = Counter()
        self.lock = threading.Lock()

    # -- data -------------------------------------------------------------------------------
    def load(self, patients: list[Resource]) -> None:
        """Replace every patient (tests start each example from the same registry)."""
        self.order = [str(p["id"]) for p in patients]
        self.patients = {str(p["id"]): copy.deepcopy(p) for p in patients}
        self.index = {}
        for pid, patient in self.patients.items():
            self._index(pid, patient)

    # Identifier tokens match case-insensitively, system and value, as Medplum's do.
    def _index(self, pid: str, patient: Resource) -> None:
        for ident in patient.get("identifier") or ():
            self.index.setdefault(_token(ident), set()).add(pid)

    def _unindex(self, pid: str, patient: Resource) -> None:
        for ident in patient.get("identifier") or ():
            self.index.get(_token(ident), set()).discard(pid)

    def search(self, system: str, value: str) -> list[Resource]:
        key = (system.casefold(), value.casefold())
        return [self.patients[pid] for pid in sorted(self.index.get(key, ()))]

    def patient(self, pid: str) -> Resource | None:
        return self.patients.get(pid)

    def store(self, pid: str, resource: Resource) -> Resource:
        """Save ``resource`` as the next version of ``pid`` (as a server does on PUT).

        The server owns ``meta.versionId`` and ``lastUpdated``: whatever the body says is
        ignored, the version is the stored one bumped (``v001`` → ``v002``, so tests can follow
        it) and ``lastUpdated`` is UTC with ``Z``, as Medplum writes it.
        """
        current = self.patients[pid]
        stored = dict(resource)
        meta = dict(stored.get("meta") or {})
        meta["versionId"] = bump_version_id((current.get("meta") or {}).get("versionId"))
        meta["lastUpdated"] = (
            datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        stored["meta"] = meta
        self._unindex(pid, current)
        self.patients[pid] = stored
        self._index(pid, stored)
        return stored

    def bundle(self) -> dict[str, Any]:
        return {
            "patients_after_phone_update": [{"resource": self.patients[pid]} for pid in self.order]
        }

    # -- bearer tokens ------------------------------------------------------------------------
    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_ttl
        self.issued_tokens.append(token)
        return token

    def token_valid(self, token: str) -> bool:
        return self.tokens.get(token, 0.0) > time.monotonic()

    def revoke_tokens(self) -> None:
        """Every token issued so far answers 401 from now on (revoked, or a key rotation)."""
        self.tokens.clear()

    # -- controls for tests -----------------------------------------------------------------
    def set_down(self, down: bool) -> None:
        """While down, every FHIR request answers 503 (an outage)."""
        self.down = down

    def fail_next(self, count: int, status: int = 500) -> None:
        self.fail_queue.extend([status] * count)

    def fail_next_sheet(
        self, count: int, status: int = 503, *, retry_after: str | None = None
    ) -> None:
        """The next ``count`` Sheets API calls answer ``status`` (with ``Retry-After``)."""
        self.sheet_fail_queue.extend([(status, retry_after)] * count)

    def sheet_failure(self) -> tuple[int, dict[str, str]] | None:
        """The next queued Sheets API failure: its status and headers; None if none is."""
        if not self.sheet_fail_queue:
            return None
        status, retry_after = self.sheet_fail_queue.pop(0)
        return status, {} if retry_after is None else {"Retry-After": retry_after}

    def fail_next_entries(self, count: int, status: int = 503) -> None:
        """The next ``count`` batch entries answer ``status`` (the Bundle itself succeeds)."""
        self.entry_fail_queue.extend([status] * count)

    def refuse_puts(self, pid: str, status: int = 422) -> None:
        """Every later PUT of ``pid`` answers ``status`` (e.g. a validation the server applies)."""
        self.refused_puts[pid] = status

    def delay_next(self, count: int, seconds: float) -> None:
        """The next ``count`` FHIR requests wait ``seconds`` before answering (client timeouts)."""
        self.delay_queue.extend([seconds] * count)

    def on_before_put(self, hook: Callable[[str, SimState], None] | None) -> None:
        """Called with (patient id, state) before each PUT or PATCH is checked: a concurrent
        writer."""
        self.before_put = hook

    def reset_stats(self) -> None:
        self.requests.clear()
        self.entries.clear()
        self.puts_by_patient.clear()
        self.patches_by_patient.clear()
        self.put_bodies.clear()

    def stats(self) -> dict[str, Any]:
        """Requests, batch entries and writes by patient (``patches_by_patient`` once any)."""
        stats: dict[str, Any] = {
            "requests": dict(self.requests),
            "entries": dict(self.entries),
            "puts_by_patient": dict(self.puts_by_patient),
        }
        if self.patches_by_patient:
            stats["patches_by_patient"] = dict(self.patches_by_patient)
        return stats

    # -- per-request faults -----------------------------------------------------------------
    def latency(self) -> float:
        extra = self.delay_queue.pop(0) if self.delay_queue else 0.0
        if self.latency_ms <= 0:
            return extra
        # Log-normal around the median: most requests near it, a long tail of slow ones.
        return extra + self.latency_ms / 1000 * math.exp(self.rng.gauss(0, 0.5))

    def injected_failure(self) -> int | None:
        if self.down:
            return 503
        if self.fail_queue:
            return self.fail_queue.pop(0)
        if self.error_rate and self.rng.random() < self.error_rate:
            return self.rng.choice((500, 503))
        return None

    async def pause(self) -> None:
        delay = self.latency()
        if delay > 0:
            await asyncio.sleep(delay)


def _token(identifier: object) -> tuple[str, str]:
    if not isinstance(identifier, dict):
        return ("", "")
    return (
        str(identifier.get("system", "")).casefold(),
        str(identifier.get("value", "")).casefold(),
    )
