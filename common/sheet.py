"""Reading the field officers' sheet: columns by header name, cells as typed, rows as numbered.

Row numbers are the ones a sheet user sees (header = row 1, first data row = row 2), so every
error and report line can be found in the sheet directly.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TextIO

from common.errors import InputError

DATE_COLUMN = "last_updated_date"
NIK_COLUMN = "nik_identifier"
NAME_COLUMN = "name"
PHONE_COLUMN = "phone_number"
REQUIRED_COLUMNS = (DATE_COLUMN, NIK_COLUMN, PHONE_COLUMN)

_HEADER_SEPARATORS = re.compile(r"[\s_\-]+")
_DATE_FORMATS = (
    (re.compile(r"(\d{1,2})-(\d{1,2})-(\d{4})"), "dmy"),  # DD-MM-YYYY, the canonical form
    (re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})"), "dmy"),
    (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"), "ymd"),
)
_NIK = re.compile(r"[0-9]{16}")  # not \d, which also takes Arabic-Indic and other digits
_WHITESPACE = re.compile(r"\s+")
_ESCAPED_BYTE = re.compile(
    "[\udc80-\udcff]"
)  # a byte that is not UTF-8, as surrogateescape keeps it

#: Longer than any date, NIK or phone number could be written, separators and all: a longer
#: cell is rejected by its length alone (its row only), before any other check reads it.
MAX_CELL_CHARS = 256
#: The csv module refuses fields over 128 KiB by default and stops the whole file. Cells up to
#: this size are read, and rejected row by row above; only a larger one stops the sheet (with
#: its row named), which bounds the memory one hostile cell can take.
CSV_FIELD_LIMIT = 64 * 1024 * 1024


class SheetError(InputError):
    """The sheet as a whole is unusable (e.g. a required column is missing)."""


class InvalidCell(ValueError):
    """One cell is unusable; the message names the column and the reason, never the value."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"{column}: {reason}")
        self.column = column
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One data row, cells exactly as typed (validation happens in :mod:`common.planning`)."""

    row: int
    date: str
    nik: str
    name: str
    phone: str


@dataclass(frozen=True, slots=True)
class Columns:
    """Where the sheet's columns are, found by name in its header row (row 1)."""

    date: int
    nik: int
    phone: int
    name: int | None

    @classmethod
    def of(cls, header: Iterable[object] | None) -> Columns:
        """The columns of ``header``; :class:`SheetError` if it is missing or lacks one."""
        if header is None:
            raise SheetError("the sheet is empty: expected a header row with " + _column_list())
        found = _locate_columns(header)
        return cls(
            found[DATE_COLUMN], found[NIK_COLUMN], found[PHONE_COLUMN], found.get(NAME_COLUMN)
        )

    def rows(self, values: Iterable[Sequence[object]], first: int = 2) -> Iterator[SheetRow]:
        """The data rows of ``values`` (a CSV's records or the Sheets API's ``values``, ragged
        rows allowed), the first being sheet row ``first``; blank rows are skipped, not
        reported."""
        width = max(self.date, self.nik, self.phone, self.name or 0) + 1
        for number, cells in enumerate(values, start=first):
            texts = [c if isinstance(c, str) else "" if c is None else str(c) for c in cells]
            if not "".join(texts).strip():
                continue
            if len(texts) < width:  # the Sheets API leaves out a row's empty trailing cells
                texts += [""] * (width - len(texts))
            yield SheetRow(
                number,
                texts[self.date],
                texts[self.nik],
                "" if self.name is None else texts[self.name],
                texts[self.phone],
            )


def read_csv(path: str | Path) -> Iterator[SheetRow]:
    """Rows of a CSV export of the sheet (UTF-8, optional BOM, any line endings), read as they
    are asked for: a million-row sheet is never in memory at once. The file is opened and its
    header checked at once."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 (_records closes it)
    except FileNotFoundError:
        raise InputError(f"sheet file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read sheet file {path}: {exc}") from None
    records = _records(handle, path)
    try:
        columns = Columns.of(next(records, None))
    except BaseException:
        records.close()
        raise
    return columns.rows(records)


def _records(handle: TextIO, path: str | Path) -> Generator[list[str], None, None]:
    with handle:
        try:
            yield from csv_records(handle, f"sheet file {path}")
        except UnicodeDecodeError:
            raise InputError(f"cannot read sheet file {path}: {not_utf8(path)}") from None


def read_csv_text(path: Path) -> str:
    """The whole text of a sheet CSV file (UTF-8), for the simulator to serve."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"cannot read sheet file {path}: {not_utf8(path)}") from None
    except OSError as exc:
        raise InputError(f"cannot read sheet file {path}: {exc}") from None


#: How to get a sheet as UTF-8 CSV, from the tools the officers' sheets pass through.
SAVE_AS_UTF8 = (
    "save it as CSV UTF-8 (Excel: File > Save As > 'CSV UTF-8 (Comma delimited)'; Google Sheets:"
    " File > Download > 'Comma Separated Values (.csv)', which is UTF-8)"
)


def not_utf8(path: str | Path) -> str:
    """Why the sheet file ``path`` cannot be read as UTF-8: the sheet row of its first byte
    that is not UTF-8 (the header is row 1, as everywhere) and how to save it right. Only
    called once reading failed, so reading the file again costs nothing the night needs."""
    with open(path, "rb") as raw:
        if raw.read(2) in (b"\xff\xfe", b"\xfe\xff"):  # the byte order mark of UTF-16
            return f"the file is UTF-16, not UTF-8 (from row 1 on): {SAVE_AS_UTF8}"
    found = _first_row_not_utf8(path)
    if found is None:
        return f"it is not UTF-8 text: {SAVE_AS_UTF8}"
    row, byte = found
    legacy = bytes([byte]).decode("cp1252", "replace")
    return (
        f"row {row} is not UTF-8 text (byte 0x{byte:02X}, {legacy!r} in Windows-1252 or"
        f" Latin-1): {SAVE_AS_UTF8}"
    )


def _first_row_not_utf8(path: str | Path) -> tuple[int, int] | None:
    """The sheet row holding the file's first byte that is not UTF-8, and that byte.

    The file is read again with such bytes kept as lone surrogates (which UTF-8 text cannot
    hold), split into lines as :func:`read_csv` splits them, and given to the csv reader, which
    asks for a line only when its record needs one: so the first record it completes after
    taking the bad line is the record, the row, that holds the byte."""
    bad: list[int] = []

    def lines() -> Iterator[str]:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as text:
            for line in text:
                escaped = None if bad else _ESCAPED_BYTE.search(line)
                if escaped:
                    bad.append(ord(escaped.group()) - 0xDC00)
                yield line

    try:
        for row, _ in enumerate(csv.reader(lines()), start=1):
            if bad:
                return row, bad[0]
    except csv.Error:
        pass
    return None


def csv_records(lines: Iterable[str], source: str = "sheet") -> Generator[list[str], None, None]:
    """The records of a CSV text, as :func:`csv.reader` gives them, but with cells up to
    :data:`CSV_FIELD_LIMIT` and every failure an :class:`InputError` naming the row (a file
    that is not UTF-8: :func:`read_csv` names it)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)  # process-wide; nothing else here reads CSV
    reader = csv.reader(lines)
    row = 0
    try:
        for row, record in enumerate(reader, start=1):  # noqa: B007 (row is reported below)
            yield record
    except csv.Error as exc:
        raise InputError(f"cannot read {source}: row {row + 1}: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc}") from None


def parse_csv(text: str) -> list[SheetRow]:
    return rows_from_values(list(csv_records(io.StringIO(text.lstrip("\ufeff")))))


def too_long(raw: str) -> str | None:
    """The reason a cell is rejected for its length alone, or None."""
    if len(raw) <= MAX_CELL_CHARS:
        return None
    return (
        f"is {len(raw):,} characters long: far too long for this column (at most {MAX_CELL_CHARS})"
    )


def rows_from_values(values: Sequence[Sequence[object]]) -> list[SheetRow]:
    """Rows from a grid of cells whose first row is the header."""
    return list(Columns.of(values[0] if values else None).rows(values[1:]))


def parse_date(raw: str) -> date:
    """``DD-MM-YYYY`` (canonical), ``DD/MM/YYYY`` or ``YYYY-MM-DD``; impossible dates rejected."""
    reason = too_long(raw)
    if reason is not None:
        raise InvalidCell(DATE_COLUMN, reason)
    return _parse_date(raw)


@lru_cache(maxsize=4096)  # a sheet holds few distinct dates and many rows
def _parse_date(raw: str) -> date:
    text = raw.strip()
    for pattern, order in _DATE_FORMATS:
        match = pattern.fullmatch(text)
        if match:
            a, b, c = (int(g) for g in match.groups())
            day, month, year = (a, b, c) if order == "dmy" else (c, b, a)
            try:
                return date(year, month, day)
            except ValueError:
                raise InvalidCell(DATE_COLUMN, "is not a real calendar date") from None
    if not text:
        raise InvalidCell(DATE_COLUMN, "is empty")
    raise InvalidCell(DATE_COLUMN, "is not a date in DD-MM-YYYY form")


def parse_nik(raw: str) -> str:
    """The NIK without whitespace; exactly 16 digits (full-width digits are read as 0-9)."""
    if len(raw) == 16 and raw.isascii() and raw.isdigit():
        return raw  # as most cells are; the rest is for the ones that are not
    reason = too_long(raw)
    if reason is not None:
        raise InvalidCell(NIK_COLUMN, reason)
    text = _WHITESPACE.sub("", unicodedata.normalize("NFKC", raw))
    if _NIK.fullmatch(text):
        return text
    if not text:
        raise InvalidCell(NIK_COLUMN, "is empty")
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        raise InvalidCell(NIK_COLUMN, "has digits other than 0-9 (retype it with Latin digits)")
    if "E+" in text.upper() or "." in text or "," in text:
        raise InvalidCell(
            NIK_COLUMN,
            "was turned into a number by the sheet (format the column as plain text "
            "and retype the 16 digits)",
        )
    digits = sum(ch.isascii() and ch.isdigit() for ch in text)
    if digits == len(text):
        raise InvalidCell(NIK_COLUMN, f"has {digits} digits, expected 16")
    raise InvalidCell(NIK_COLUMN, "must be 16 digits and nothing else")


def _normal_header(cell: object) -> str:
    return _HEADER_SEPARATORS.sub("_", str(cell).strip().lstrip("\ufeff").lower()).strip("_")


def _locate_columns(header: Iterable[object]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = _normal_header(cell)
        if name in (*REQUIRED_COLUMNS, NAME_COLUMN):
            if name in found:
                raise SheetError(f"column {name!r} appears twice in the header row")
            found[name] = index
    missing = [c for c in REQUIRED_COLUMNS if c not in found]
    if missing:
        raise SheetError(
            "missing required column"
            + ("s " if len(missing) > 1 else " ")
            + ", ".join(repr(m) for m in missing)
            + " in the header row (row 1)"
        )
    return found


def _column_list() -> str:
    return ", ".join(REQUIRED_COLUMNS)
