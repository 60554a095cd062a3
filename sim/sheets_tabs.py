"""The Sheets API calls that write a tab, simulated: what the job's report writer uses.

``spreadsheets.get`` (tab titles), ``spreadsheets.batchUpdate`` (``addSheet``),
``values.clear`` and ``values.update`` keep cells per spreadsheet and tab; ``values.get`` of a
tab written here serves them back (trailing empty cells dropped, as the real API does), so a
test reads what the officers will see. Any spreadsheet id exists, with a ``Sheet1`` tab.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sim import _sheets as read_side

_A1_CELLS = re.compile(r"[A-Za-z]{1,3}\d*(:[A-Za-z]{1,3}\d*)?|\d+(:\d+)?")


def split_range(a1: str) -> tuple[str, str]:
    """``'it''s'!A1`` → (``it's``, ``A1``); ``phonesync`` → (``phonesync``, ``""``)."""
    if a1.startswith("'"):
        i, name = 1, []
        while i < len(a1):
            if a1[i] == "'":
                if a1[i + 1 : i + 2] == "'":
                    name.append("'")
                    i += 2
                    continue
                break
            name.append(a1[i])
            i += 1
        rest = a1[i + 1 :]
        return "".join(name), rest.removeprefix("!")
    tab, _, cells = a1.partition("!")
    if not cells and _A1_CELLS.fullmatch(tab):  # a bare A1 range: the first tab
        return "", tab
    return tab, cells


class SheetTabs:
    """Tabs per spreadsheet and their cells, as the write calls left them."""

    def __init__(self) -> None:
        self.titles: dict[str, list[str]] = {}
        self.cells: dict[tuple[str, str], list[list[str]]] = {}

    def tabs(self, spreadsheet: str) -> list[str]:
        return self.titles.setdefault(spreadsheet, ["Sheet1"])

    def values(self, spreadsheet: str, tab: str) -> list[list[str]] | None:
        """The cells of a tab written through the API, trailing empties dropped; else None."""
        rows = self.cells.get((spreadsheet, tab))
        if rows is None:
            return None
        return trim_empty_ends([list(r) for r in rows])


def trim_empty_ends(rows: list[list[str]]) -> list[list[str]]:
    """``rows`` without trailing empty cells and rows, as the Sheets API answers (in place)."""
    for row in rows:
        while row and row[-1] == "":
            row.pop()
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    error = {"code": status, "status": reason, "message": message}
    return _json({"error": error}, status, headers)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def tab_routes(sim: Any) -> list[Route]:
    """Routes on ``sim`` (a SimState: ``sheet_tabs``, ``sheet_failure()``, ``requests``)."""
    tabs: SheetTabs = sim.sheet_tabs

    def grid(sid: str, tab: str) -> dict[str, int]:
        written = tabs.values(sid, tab)
        return read_side.grid(
            written if written is not None or tab != read_side.TITLE else sim.sheet_values
        )

    def refused(request: Request) -> Response | None:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "UNAUTHENTICATED", "missing credentials")
        failure = sim.sheet_failure()
        if failure is not None:
            status, headers = failure
            return _error(status, "SIMULATED", "simulated failure", headers)
        return None

    async def spreadsheet(request: Request) -> Response:
        sid = request.path_params["sheet_id"]
        if request.method == "GET":
            if ":" in sid:
                return _error(404, "NOT_FOUND", "no such method")
            sheets = [
                {
                    "properties": {
                        "sheetId": i,
                        "title": t,
                        "index": i,
                        "gridProperties": grid(sid, t),
                    }
                }
                for i, t in enumerate(tabs.tabs(sid))
            ]
            return refused(request) or _json({"spreadsheetId": sid, "sheets": sheets})
        sid, _, method = sid.partition(":")
        if method != "batchUpdate":
            return _error(404, "NOT_FOUND", f"no such method {method!r}")
        problem = refused(request)
        if problem:
            return problem
        body = orjson.loads(await request.body())
        replies: list[dict[str, Any]] = []
        for change in body.get("requests", []):
            title = (change.get("addSheet") or {}).get("properties", {}).get("title")
            if not title:
                return _error(400, "INVALID_ARGUMENT", "only addSheet with a title is simulated")
            if title in tabs.tabs(sid):
                return _error(
                    400, "INVALID_ARGUMENT", f'A sheet with the name "{title}" already exists.'
                )
            tabs.tabs(sid).append(title)
            tabs.cells[(sid, title)] = []
            replies.append({"addSheet": {"properties": {"title": title}}})
        return _json({"spreadsheetId": sid, "replies": replies})

    async def values_write(request: Request) -> Response:
        sid, a1 = request.path_params["sheet_id"], request.path_params["range"]
        clear = request.method == "POST"
        if clear:
            if not a1.endswith(":clear"):
                return _error(404, "NOT_FOUND", "only values.clear is simulated on POST")
            a1 = a1.removesuffix(":clear")
        problem = refused(request)
        if problem:
            return problem
        tab, cells = split_range(a1)
        if tab not in tabs.tabs(sid):
            return _error(400, "INVALID_ARGUMENT", f"Unable to parse range: {a1}")
        if clear:
            tabs.cells[(sid, tab)] = []
            sim.requests["SHEETS clear"] += 1
            return _json({"spreadsheetId": sid, "clearedRange": a1})
        if request.query_params.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            return _error(400, "INVALID_ARGUMENT", "valueInputOption is required")
        if cells not in ("", "A1"):
            return _error(400, "INVALID_ARGUMENT", "the simulator writes from A1 only")
        body = orjson.loads(await request.body())
        rows = [[_cell(v) for v in row] for row in body.get("values", [])]
        tabs.cells[(sid, tab)] = rows
        sim.requests["SHEETS update"] += 1
        return _json(
            {
                "spreadsheetId": sid,
                "updatedRange": a1,
                "updatedRows": len(rows),
                "updatedCells": sum(len(r) for r in rows),
            }
        )

    return [
        Route("/v4/spreadsheets/{sheet_id}", spreadsheet, methods=["GET", "POST"]),
        Route(
            "/v4/spreadsheets/{sheet_id}/values/{range:path}", values_write, methods=["POST", "PUT"]
        ),
    ]
