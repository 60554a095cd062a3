"""The Google Sheets API v4 with the job's identity: reading the sheet, writing the report tab.

Credentials are Application Default Credentials (on Cloud Run: the job's service account, to
which the Sheet is shared; no key file exists). The ``SHEETS_ACCESS_TOKEN`` setting replaces
them for local runs against the simulator (``common.sheet_access``).

The sheet only grows (each night adds its rows), so it is read in chunks of rows — one
``spreadsheets.get`` for the grid's size, then ``values.get`` of bounded A1 row ranges — and
its rows are handed on as each chunk arrives: task 0 plans them as they come and never holds
the whole sheet (a million rows are ~67 MB of JSON in one answer; Google advises a few MB).
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

import httpx
import orjson

from common.cloud_access import open_google_client
from common.errors import InputError, PhonesyncError
from common.retry import backoff_delay, parse_retry_after, retryable_status
from common.sheet import Columns, SheetRow

SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
#: Backoff between attempts of a call (``common.retry.backoff_delay``): base and cap, seconds.
_BACKOFF_BASE, _BACKOFF_CAP = 0.5, 30.0

#: Rows per ``values.get``: ~1.3 MB of JSON at the sheet's ~65 bytes a row, so a million rows
#: take 50 reads, within the read quota without waiting.
CHUNK_ROWS = 20_000
#: The Sheets API's read requests per minute per user (the job's service account).
READS_PER_MINUTE = 60


# -- reading: the officers' sheet ---------------------------------------------------------------


class SheetReadError(InputError):
    """The sheet could not be read (permissions, missing sheet, API down after retries)."""


def default_token(scope: str = SCOPE) -> str:
    """An OAuth access token for the Sheets API: the job's own credentials (ADC)."""
    import google.auth
    import google.auth.transport.requests

    credentials, _ = open_google_client(
        "the Sheets API", lambda: google.auth.default(scopes=[scope])
    )
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    return str(credentials.token)


_A1 = re.compile(r"(?i)([A-Z]*)(\d*)(?::([A-Z]*)(\d*))?")


@dataclass(frozen=True, slots=True)
class A1Range:
    """A ``SHEET_RANGE`` such as ``Sheet1!A:D``, ``'Data 2025'!A2:F`` or ``A:Z`` (first sheet)."""

    sheet: str | None  # None: the spreadsheet's first sheet
    first_column: str = ""  # "" with last_column "": every column
    last_column: str = ""
    first_row: int = 1
    last_row: int | None = None  # None: to the end of the grid

    @classmethod
    def parse(cls, text: str) -> A1Range:
        sheet, bang, cells = text.rpartition("!")
        if not bang:
            sheet, cells = "", text
        if sheet.startswith("'") and sheet.endswith("'") and len(sheet) >= 2:
            sheet = sheet[1:-1].replace("''", "'")
        match = _A1.fullmatch(cells)
        if not bang and (match is None or ":" not in cells):
            return cls(text)  # a sheet's name alone
        if match is None or not cells:
            raise SheetReadError(f"SHEET_RANGE {text!r} is not an A1 range such as Sheet1!A:D")
        first_column, first_row, last_column, last_row = (g or "" for g in match.groups())
        return cls(
            sheet or None,
            first_column.upper(),
            (last_column or first_column).upper(),
            int(first_row or 1),
            int(last_row) if last_row else None,
        )

    def rows(self, title: str, first: int, last: int) -> str:
        """Rows ``first``..``last`` of these columns on sheet ``title``, in A1 notation."""
        return f"{a1_tab(title)}!{self.first_column}{first}:{self.last_column}{last}"


class _Pacer:
    """Holds requests back so that at most ``per_minute`` start in any 60 seconds."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.per_minute, self.clock, self.sleep = per_minute, clock, sleep
        self.started: deque[float] = deque()

    def wait(self) -> None:
        while len(self.started) >= self.per_minute:
            wait = self.started[0] + 60.0 - self.clock()
            if wait <= 0:
                self.started.popleft()
            else:
                self.sleep(wait)
        self.started.append(self.clock())


#: What a refusal of a read means, by status.
_READ_HINTS = {
    400: "the range is not valid for this sheet: check SHEET_RANGE",
    401: "the job's credentials were refused",
    403: "the job's service account has no access: share the Sheet with its e-mail (Viewer)",
    404: "no such spreadsheet or range: check SHEET_ID and SHEET_RANGE",
}


class ClientOptions(TypedDict, total=False):
    """How :func:`read_sheet` and :func:`replace_tab` reach the API: :class:`SheetsClient`'s."""

    api_url: str
    token: Callable[[], str]
    attempts: int
    timeout: float
    sleep: Callable[[float], None]
    rng: random.Random | None
    reads_per_minute: int


class SheetsClient:
    """Calls of one spreadsheet through the Sheets API: bearer token, pacing within the per-user
    quota, and retries of no answer, 408, 429 and 5xx with the common jittered backoff
    (``Retry-After`` honoured as its floor, as seconds or an HTTP date).

    A call that fails raises ``error``: with ``hints[status]`` when the API refused it, or
    after ``attempts`` retryable failures. ``rng`` and ``sleep`` are the backoff's.
    """

    def __init__(
        self,
        sheet_id: str,
        *,
        api_url: str = "https://sheets.googleapis.com",
        token: Callable[[], str] = default_token,
        attempts: int = 5,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        reads_per_minute: int = READS_PER_MINUTE,
        error: type[PhonesyncError] = SheetReadError,
        hints: Mapping[int, str] = _READ_HINTS,
    ) -> None:
        self.base = f"{api_url.rstrip('/')}/v4/spreadsheets/{quote(sheet_id, safe='')}"
        self.attempts, self.sleep, self.rng = attempts, sleep, rng
        self.error, self.hints = error, hints
        self.pacer = _Pacer(reads_per_minute, time.monotonic, sleep)
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token()}"}, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **options: Any) -> Any:
        """The JSON answer of ``method base + path`` (``options`` as httpx takes them)."""
        problem = ""
        for attempt in range(self.attempts):
            self.pacer.wait()
            retry_after = 0.0
            try:
                response = self.http.request(method, self.base + path, **options)
            except httpx.TransportError as exc:
                problem = f"network error: {type(exc).__name__}"
            else:
                status = response.status_code
                if status == 200:
                    return orjson.loads(response.content)
                if not retryable_status(status):
                    hint = self.hints.get(status, "unexpected answer")
                    raise self.error(f"Sheets API answered {status}: {hint}")
                problem = f"HTTP {status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt + 1 < self.attempts:
                self.sleep(
                    backoff_delay(
                        attempt, _BACKOFF_BASE, _BACKOFF_CAP, floor=retry_after, rng=self.rng
                    )
                )
        raise self.error(f"Sheets API failed after {self.attempts} attempts: {problem}")

    def grid(self, sheet: str | None) -> tuple[str, int]:
        """The title and row count of sheet ``sheet`` (None: the first sheet)."""
        fields = "sheets(properties(title,index,gridProperties(rowCount)))"
        answer = self.call("GET", "", params={"fields": fields})
        sheets = sorted(
            (s.get("properties", {}) for s in answer.get("sheets", [])),
            key=lambda p: p.get("index", 0),
        )
        for properties in sheets:
            if sheet is None or properties.get("title") == sheet:
                rows = properties.get("gridProperties", {}).get("rowCount", 0)
                return str(properties.get("title", "")), int(rows)
        raise SheetReadError(
            f"the spreadsheet has no sheet named {sheet!r}: check SHEET_RANGE"
            if sheet is not None
            else "the spreadsheet has no sheets"
        )

    def values(self, a1: str) -> list[list[object]]:
        """``values.get`` of one range: rows as displayed, trailing empty cells left out."""
        params = {"majorDimension": "ROWS", "valueRenderOption": "FORMATTED_VALUE"}
        answer = self.call("GET", f"/values/{quote(a1, safe='')}", params=params)
        values: list[list[object]] = answer.get("values", [])
        return values


def read_sheet(
    sheet_id: str,
    sheet_range: str,
    *,
    chunk_rows: int | None = None,
    **options: Unpack[ClientOptions],
) -> Iterator[SheetRow]:
    """The rows of ``sheet_range``, read ``chunk_rows`` (default :data:`CHUNK_ROWS`) rows per
    request; the next chunk is fetched while the caller works on this one. The grid's size and
    the header are read at once, so an unreadable sheet fails here and not halfway through."""
    client = SheetsClient(sheet_id, **options)
    try:
        area = A1Range.parse(sheet_range)
        title, grid_rows = client.grid(area.sheet)
        last = grid_rows if area.last_row is None else min(area.last_row, grid_rows)
        chunk_rows = chunk_rows or CHUNK_ROWS
        chunks = [
            (first, min(first + chunk_rows - 1, last))
            for first in range(area.first_row, last + 1, chunk_rows)
        ]
        first_values = client.values(area.rows(title, *chunks[0])) if chunks else []
        columns = Columns.of(first_values[0] if first_values else None)
    except BaseException:
        client.close()
        raise
    return _chunked_rows(client, area, title, chunks, columns, first_values)


def _chunked_rows(
    client: SheetsClient,
    area: A1Range,
    title: str,
    chunks: list[tuple[int, int]],
    columns: Columns,
    first_values: list[list[object]],
) -> Iterator[SheetRow]:
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="sheet-reader") as pool:
            values, start = first_values[1:], chunks[0][0] + 1  # after the header
            for following in chunks[1:]:
                # The next read runs while the caller plans these rows.
                ahead = pool.submit(client.values, area.rows(title, *following))
                yield from columns.rows(values, start)
                values, start = ahead.result(), following[0]
            yield from columns.rows(values, start)
    finally:
        client.close()


# -- writing: the officers' report tab ----------------------------------------------------------
# The reader's client, with its own token: the job writes only to REPORT_SHEET_ID, with the
# read-write scope, and a failure here never stops a run (the caller records it).

WRITE_SCOPE = "https://www.googleapis.com/auth/spreadsheets"


class SheetWriteError(PhonesyncError):
    """The report tab could not be written (permissions, no such spreadsheet, API down)."""


#: What a refusal of a write means, by status.
_WRITE_HINTS = {
    401: "the job's credentials were refused",
    403: "the job's service account cannot edit it: share the report"
    " spreadsheet with its e-mail as Editor",
    404: "no such spreadsheet: check REPORT_SHEET_ID",
}


def write_token() -> str:
    """An OAuth access token allowed to edit spreadsheets: the job's own credentials (ADC)."""
    return default_token(WRITE_SCOPE)


def a1_tab(tab: str) -> str:
    """A tab name as A1 notation quotes it: ``'phonesync'``, ``'it''s'``."""
    return "'" + tab.replace("'", "''") + "'"


def replace_tab(
    spreadsheet_id: str,
    tab: str,
    values: Sequence[Sequence[str]],
    **options: Unpack[ClientOptions],
) -> None:
    """Make ``tab`` hold exactly ``values`` from A1: add the tab if missing, clear it, write.

    Three calls: ``spreadsheets.get`` (which tabs exist), ``batchUpdate`` ``addSheet`` when the
    tab is new, ``values.clear`` and ``values.update`` with ``RAW`` input (a cell starting with
    ``=`` stays text, never a formula). By default with :func:`write_token` and 3 attempts.
    """
    options.setdefault("token", write_token)
    options.setdefault("attempts", 3)
    client = SheetsClient(spreadsheet_id, error=SheetWriteError, hints=_WRITE_HINTS, **options)
    try:
        meta = client.call("GET", "", params={"fields": "sheets.properties.title"})
        titles = {s.get("properties", {}).get("title") for s in meta.get("sheets", [])}
        if tab not in titles:
            add = {"requests": [{"addSheet": {"properties": {"title": tab}}}]}
            client.call("POST", ":batchUpdate", json=add)
        whole = a1_tab(tab)
        client.call("POST", f"/values/{quote(whole, safe='')}:clear", json={})
        start = f"{whole}!A1"
        client.call(
            "PUT",
            f"/values/{quote(start, safe='')}",
            params={"valueInputOption": "RAW"},
            json={"range": start, "majorDimension": "ROWS", "values": [list(r) for r in values]},
        )
    finally:
        client.close()
