"""Where a process's sheet comes from: a CSV export (``SHEET_CSV``) or the Sheets API
(``SHEET_ID``), with the job's own credentials or, against the simulator, ``SHEETS_ACCESS_TOKEN``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from common.config import Settings
from common.sheet import SheetRow, read_csv


def read_rows(settings: Settings) -> Iterable[SheetRow]:
    """The sheet's rows as they arrive (a stream: the Sheets API is read in chunks)."""
    if settings.sheet_csv is not None:
        return read_csv(settings.sheet_csv)
    from common.sheets_api import default_token, read_sheet

    return read_sheet(
        str(settings.sheet_id),
        settings.sheet_range,
        api_url=settings.sheets_api_url,
        token=sheets_token(settings, default_token),
    )


def sheets_token(settings: Settings, credentials: Callable[[], str]) -> Callable[[], str]:
    """``SHEETS_ACCESS_TOKEN`` when set (the Sheets simulator), else the job's ``credentials``."""
    if settings.sheets_access_token is None:
        return credentials
    token = settings.sheets_access_token.get_secret_value()
    return lambda: token
