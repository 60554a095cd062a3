"""Reading the sheet through the Google Sheets API v4 ``values.get`` with the job's identity.

Credentials are Application Default Credentials (on Cloud Run: the job's service account, to
which the Sheet is shared; no key file exists). ``SHEETS_ACCESS_TOKEN`` overrides them for
local runs against the simulator.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from common.errors import InputError, PhonesyncError
from common.sheet import SheetRow, rows_from_values

SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


class SheetReadError(InputError):
    """The sheet could not be read (permissions, missing sheet, API down after retries)."""


def default_token() -> str:
    """An OAuth access token for the Sheets API (ADC), or ``SHEETS_ACCESS_TOKEN`` if set."""
    override = os.environ.get("SHEETS_ACCESS_TOKEN")
    if override:
        return override
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=[SCOPE])
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    return str(credentials.token)


def read_sheet(
    sheet_id: str,
    sheet_range: str,
    *,
    api_url: str = "https://sheets.googleapis.com",
    token: Callable[[], str] = default_token,
    attempts: int = 5,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SheetRow]:
    """All rows of ``sheet_range``, retrying 429/5xx and network errors with backoff."""
    url = f"{api_url.rstrip('/')}/v4/spreadsheets/{quote(sheet_id)}/values/{quote(sheet_range)}"
    params = {"majorDimension": "ROWS", "valueRenderOption": "FORMATTED_VALUE"}
    headers = {"Authorization": f"Bearer {token()}"}
    problem = ""
    for attempt in range(attempts):
        try:
            response = httpx.get(url, params=params, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            problem = f"network error: {type(exc).__name__}"
        else:
            if response.status_code == 200:
                return rows_from_values(response.json().get("values", []))
            if response.status_code not in _TRANSIENT:
                raise SheetReadError(_explain(response))
            problem = f"HTTP {response.status_code}"
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                sleep(float(retry_after))
                continue
        if attempt + 1 < attempts:
            sleep(random.uniform(0, min(30.0, 0.5 * 2**attempt)))
    raise SheetReadError(f"Sheets API failed after {attempts} attempts: {problem}")


def _explain(response: httpx.Response) -> str:
    hint = {
        401: "the job's credentials were refused",
        403: "the job's service account has no access: share the Sheet with its e-mail (Viewer)",
        404: "no such spreadsheet or range: check SHEET_ID and SHEET_RANGE",
    }.get(response.status_code, "unexpected answer")
    return f"Sheets API answered {response.status_code}: {hint}"


# -- writing: the officers' report tab ----------------------------------------------------------
# Kept apart from the reader above: the job writes only to REPORT_SHEET_ID, with the read-write
# scope, and a failure here never stops a run (the caller records it).

WRITE_SCOPE = "https://www.googleapis.com/auth/spreadsheets"


class SheetWriteError(PhonesyncError):
    """The report tab could not be written (permissions, no such spreadsheet, API down)."""


def write_token() -> str:
    """An OAuth access token allowed to edit spreadsheets (ADC), or ``SHEETS_ACCESS_TOKEN``."""
    override = os.environ.get("SHEETS_ACCESS_TOKEN")
    if override:
        return override
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=[WRITE_SCOPE])
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    return str(credentials.token)


def a1_tab(tab: str) -> str:
    """A tab name as A1 notation quotes it: ``'phonesync'``, ``'it''s'``."""
    return "'" + tab.replace("'", "''") + "'"


def replace_tab(
    spreadsheet_id: str,
    tab: str,
    values: Sequence[Sequence[str]],
    *,
    api_url: str = "https://sheets.googleapis.com",
    token: Callable[[], str] = write_token,
    attempts: int = 3,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Make ``tab`` hold exactly ``values`` from A1: add the tab if missing, clear it, write.

    Three calls: ``spreadsheets.get`` (which tabs exist), ``batchUpdate`` ``addSheet`` when the
    tab is new, ``values.clear`` and ``values.update`` with ``RAW`` input (a cell starting with
    ``=`` stays text, never a formula).
    """
    base = f"{api_url.rstrip('/')}/v4/spreadsheets/{quote(spreadsheet_id, safe='')}"
    with httpx.Client(headers={"Authorization": f"Bearer {token()}"}, timeout=timeout) as client:

        def call(method: str, url: str, **kwargs: Any) -> Any:
            return _write_call(client, method, url, attempts, sleep, **kwargs)

        meta = call("GET", base, params={"fields": "sheets.properties.title"})
        titles = {s.get("properties", {}).get("title") for s in meta.get("sheets", [])}
        if tab not in titles:
            add = {"requests": [{"addSheet": {"properties": {"title": tab}}}]}
            call("POST", f"{base}:batchUpdate", json=add)
        whole = a1_tab(tab)
        call("POST", f"{base}/values/{quote(whole, safe='')}:clear", json={})
        start = f"{whole}!A1"
        call(
            "PUT",
            f"{base}/values/{quote(start, safe='')}",
            params={"valueInputOption": "RAW"},
            json={"range": start, "majorDimension": "ROWS", "values": [list(r) for r in values]},
        )


def _write_call(
    client: httpx.Client,
    method: str,
    url: str,
    attempts: int,
    sleep: Callable[[float], None],
    **kwargs: Any,
) -> Any:
    problem = ""
    for attempt in range(attempts):
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            problem = f"network error: {type(exc).__name__}"
        else:
            if response.status_code == 200:
                return response.json()
            if response.status_code not in _TRANSIENT:
                hint = {
                    401: "the job's credentials were refused",
                    403: "the job's service account cannot edit it: share the report"
                    " spreadsheet with its e-mail as Editor",
                    404: "no such spreadsheet: check REPORT_SHEET_ID",
                }.get(response.status_code, "unexpected answer")
                raise SheetWriteError(f"Sheets API answered {response.status_code}: {hint}")
            problem = f"HTTP {response.status_code}"
        if attempt + 1 < attempts:
            sleep(random.uniform(0, min(10.0, 0.5 * 2**attempt)))
    raise SheetWriteError(f"Sheets API failed after {attempts} attempts: {problem}")
