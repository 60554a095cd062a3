"""The read side of the Sheets API v4, simulated: grids and ``values.get`` of A1 ranges.

The officers' sheet is ``Sheet1``; a tab's grid is as Google makes it: 1,000 rows for a new
tab, more when rows are appended. ``values.get`` honours A1 ranges (``A1:D20000``, ``A:Z``,
``2:5``) as the real API does: a range reaching past the grid is cut at its end, one starting
past it is a 400 ("exceeds grid limits"), trailing empty cells and rows are left out.
"""

from __future__ import annotations

import re
from typing import Any

TITLE = "Sheet1"  # the officers' sheet
GRID_MIN_ROWS = 1_000
GRID_COLUMNS = 26

_CELLS = re.compile(r"(?i)([A-Z]*)(\d*)(?::([A-Z]*)(\d*))?")


class RangeError(ValueError):
    """A range the API answers with 400 INVALID_ARGUMENT."""


def grid_rows(values: list[list[str]]) -> int:
    return max(GRID_MIN_ROWS, len(values))


def grid(values: list[list[str]] | None) -> dict[str, int]:
    """A tab's ``gridProperties`` as ``spreadsheets.get`` gives them."""
    return {"rowCount": grid_rows(values or []), "columnCount": GRID_COLUMNS}


def values_get(values: list[list[str]], tab: str, cells: str) -> dict[str, Any]:
    """``values.get``'s answer for ``cells`` (A1, e.g. ``A1:D20000``, ``A:Z``, ``2:5``; empty:
    the whole tab) of tab ``tab`` holding ``values``; :class:`RangeError` for a 400."""
    match = _CELLS.fullmatch(cells)
    if (
        match is None
        or (cells and ":" not in cells and not (match[1] and match[2]))  # "A" or "5" alone
        or (":" in cells and not (match[3] or match[4]))  # "A1:"
        or cells.startswith(":")
    ):
        raise RangeError(f"Unable to parse range: {tab}!{cells}")
    first_col, first_row, last_col, last_row = match.groups()
    if ":" not in cells:
        last_col, last_row = first_col, first_row
    rows = grid_rows(values)
    top = int(first_row) if first_row else 1
    bottom = min(int(last_row), rows) if last_row else rows
    left = _column(first_col) if first_col else 0
    right = _column(last_col) if last_col else GRID_COLUMNS - 1
    if top > rows or left >= GRID_COLUMNS:
        raise RangeError(
            f"Range ({tab}!{cells}) exceeds grid limits. Max rows: {rows}, "
            f"max columns: {GRID_COLUMNS}"
        )
    out = [_trimmed(row[left : right + 1]) for row in values[top - 1 : bottom]]
    while out and not out[-1]:
        out.pop()
    answer: dict[str, Any] = {
        "range": f"{tab}!{_letters(left)}{top}:{_letters(right)}{bottom}",
        "majorDimension": "ROWS",
    }
    if out:
        answer["values"] = out
    return answer


def _trimmed(cells: list[str]) -> list[str]:
    end = len(cells)
    while end and cells[end - 1] == "":
        end -= 1
    return cells[:end]


def _column(letters: str) -> int:
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


def _letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(ord("A") + rest) + out
    return out
