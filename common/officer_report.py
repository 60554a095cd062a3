"""The officers' report tab: the rows of a run that need a field officer, in Bahasa Indonesia.

Written after each run to ``REPORT_SHEET_TAB`` of ``REPORT_SHEET_ID`` (replacing the tab), so
the officers see, in the sheet they work in, which rows to fix and how. Newest rows first; a
row whose date cannot be read comes last. No full NIK or phone number: the NIK is masked, and
anything NIK- or phone-shaped in the name or the reason is blanked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence

from common.config import Settings
from common.jakarta import jakarta_time
from common.outcomes import NEEDS_OFFICER, RowOutcome, Status
from common.privacy import mask_nik, redact
from common.sheet import InvalidCell, SheetRow, parse_date
from common.sheet_access import read_rows, sheets_token
from common.store import RunState, StateStore
from common.telemetry import log_event

HEADER = [
    "Baris",
    "Tanggal",
    "Nama",
    "NIK (disamarkan)",
    "Masalah",
    "Yang perlu dilakukan",
    "Keterangan (bahasa Inggris)",
]

#: What went wrong and what the officer does about it, per status.
GUIDANCE: Mapping[Status, tuple[str, str]] = {
    Status.INVALID_DATE: (
        "Tanggal tidak valid",
        "Perbaiki kolom last_updated_date: tanggal dengan format HH-BB-TTTT (contoh 23-09-2025).",
    ),
    Status.INVALID_NIK: (
        "NIK tidak valid",
        "Perbaiki kolom nik_identifier: 16 angka tanpa spasi atau tanda lain. Jika NIK tampil"
        " seperti 3.17104E+15, ubah format kolom menjadi teks biasa lalu ketik ulang NIK.",
    ),
    Status.INVALID_PHONE: (
        "Nomor HP tidak valid",
        "Perbaiki kolom phone_number: nomor HP Indonesia yang diawali 08 atau +62 8, tanpa huruf"
        " atau nomor tambahan. Nomor lama pasien tidak diubah sampai baris ini diperbaiki.",
    ),
    Status.NOT_FOUND: (
        "NIK tidak ditemukan di registri",
        "Cocokkan NIK dengan KTP atau KK pasien dan perbaiki bila salah. Jika NIK sudah benar,"
        " laporkan ke tim registri agar pasien didaftarkan.",
    ),
    Status.AMBIGUOUS: (
        "NIK tercatat pada lebih dari satu pasien",
        "Laporkan ke tim registri (sebutkan nomor baris): nomor HP tidak diperbarui sampai data"
        " ganda dibereskan.",
    ),
}


def report_values(
    run_date: str,
    outcomes: Sequence[RowOutcome],
    sheet_rows: Iterable[SheetRow],
    written_at: str,
) -> list[list[str]]:
    """The tab's cells: a title row, the header, then one row per outcome needing an officer.

    ``sheet_rows`` gives each row's date and name as typed; a sheet row whose NIK no longer
    matches the outcome (the sheet was edited since the run read it) leaves them blank rather
    than show another person's name.
    """
    by_row = {r.row: r for r in sheet_rows}
    needing = [o for o in outcomes if o.status in NEEDS_OFFICER]
    typed = [(o, _typed(o, by_row.get(o.row))) for o in needing]
    typed.sort(key=lambda pair: _newest_first(pair[0], pair[1][0]))
    title = (
        f"phonesync {run_date}: {len(needing)} baris perlu tindakan (dibuat {written_at})."
        " Perbaiki di lembar; baris yang sudah diperbaiki diproses pada sinkronisasi berikutnya."
        if needing
        else f"phonesync {run_date}: tidak ada baris yang perlu tindakan (dibuat {written_at})."
    )
    values = [[title], HEADER]
    for outcome, (day, name) in typed:
        problem, action = GUIDANCE[outcome.status]
        values.append(
            [
                str(outcome.row),
                day,
                redact(name),
                outcome.nik_masked,
                problem,
                action,
                redact(outcome.reason),
            ]
        )
    return values


def _typed(outcome: RowOutcome, sheet_row: SheetRow | None) -> tuple[str, str]:
    """The row's date and name as typed, if the sheet row is still the one the run saw."""
    if sheet_row is None or mask_nik(sheet_row.nik) != outcome.nik_masked:
        return "", ""
    return sheet_row.date.strip(), sheet_row.name.strip()


def _newest_first(outcome: RowOutcome, typed_date: str) -> tuple[int, int, int]:
    try:
        day = parse_date(typed_date)
    except InvalidCell:
        return (1, 0, -outcome.row)  # unreadable dates after every dated row
    return (0, -day.toordinal(), -outcome.row)


def write_officer_report(settings: Settings, store: StateStore, run: RunState) -> None:
    """Replace the officers' report tab with the run's rows needing action (when configured).

    Never raises: a report that cannot be written must not fail (and so retry) a finished run.
    The outcome is logged (``report_written`` / ``report_failed``, counted by a log-based
    metric) and kept with the run for ``phonesync status``.
    """
    if not settings.report_sheet_id:
        return
    from common.sheets_api import replace_tab, write_token

    tab = settings.report_sheet_tab
    try:
        outcomes = store.outcomes(run.run_date)
        needing = [o for o in outcomes if o.status in NEEDS_OFFICER]
        rows = read_rows(settings) if needing else []  # the date and name as typed
        values = report_values(run.run_date, outcomes, rows, jakarta_time(time.time()))
        replace_tab(
            settings.report_sheet_id,
            tab,
            values,
            api_url=settings.sheets_api_url,
            token=sheets_token(settings, write_token),
        )
    except Exception as exc:  # any failure: recorded below, the run stays as it finished
        detail = f"failed: {type(exc).__name__}: {exc}"
        log_event(
            "report_failed",
            f"the officers' report tab {tab!r} was not written: {exc}",
            severity=logging.ERROR,
            tab=tab,
            reason=str(exc),
        )
    else:
        detail = f"written: {len(needing)} row(s) to tab {tab!r} at {jakarta_time(time.time())}"
        log_event(
            "report_written",
            f"{len(needing)} row(s) to the officers' tab {tab!r}",
            tab=tab,
            rows=len(needing),
        )
    try:
        store.set_report(run.run_date, run.execution, detail)
    except Exception as exc:  # the tab's fate stays in the log line above
        log_event("report_unrecorded", str(exc), severity=logging.WARNING)
