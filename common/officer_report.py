"""The officers' report tab: the rows of a run that need a field officer, in Bahasa Indonesia.

Written after each run to ``REPORT_SHEET_TAB`` of ``REPORT_SHEET_ID`` (replacing the tab), so
the officers see, in the sheet they work in, which rows to fix and how, since when each waits
and until when it is checked (``ACTION_DAYS``; the last night says so). Newest rows first; a
row whose date cannot be read comes last. No full NIK or phone number: the NIK is masked, and
anything NIK- or phone-shaped in the name or the reason is blanked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from common.config import Settings
from common.jakarta import jakarta_time
from common.outcomes import NEEDS_OFFICER, RowOutcome, Status, summarize
from common.privacy import mask_nik, redact
from common.sheet import InvalidCell, SheetRow, parse_date
from common.sheet_access import read_rows, sheets_token
from common.store import RunState, StateStore, WaitingRow
from common.telemetry import log_event

HEADER = [
    "Baris",
    "Tanggal",
    "Nama",
    "NIK (disamarkan)",
    "Masalah",
    "Yang perlu dilakukan",
    "Menunggu sejak",
    "Diperiksa sampai",
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
        " laporkan ke tim registri agar pasien didaftarkan: NIK ini dicari lagi setiap malam.",
    ),
    Status.AMBIGUOUS: (
        "NIK tercatat pada lebih dari satu pasien",
        "Laporkan ke tim registri (sebutkan nomor baris): nomor HP tidak diperbarui sampai data"
        " ganda dibereskan. NIK ini dicari lagi setiap malam.",
    ),
}

#: Put before the action of a row checked for the last time tonight.
LAST_NOTICE = (
    "PEMBERITAHUAN TERAKHIR: setelah malam ini baris ini tidak diperiksa lagi dan hilang dari"
    " daftar ini. Jika nomornya masih perlu diperbarui, ketik data yang benar sebagai baris"
    " baru dengan tanggal hari ini. "
)


def title(run_date: str, needing: int, written_at: str, action_days: int) -> str:
    """The tab's first cell: what it lists, and exactly what the job does with those rows."""
    if not needing:
        return f"phonesync {run_date}: tidak ada baris yang perlu tindakan (dibuat {written_at})."
    return (
        f"phonesync {run_date}: {needing} baris perlu tindakan (dibuat {written_at})."
        f" Setiap malam phonesync memeriksa lagi setiap baris di bawah ini, sampai {action_days}"
        " hari sesudah tanggal barisnya (baris yang tanggalnya tidak valid: sesudah pertama kali"
        " dilaporkan). Perbaiki sel yang salah di baris itu sendiri (tanggalnya boleh tetap),"
        " atau ketik data yang benar sebagai baris baru dengan tanggal hari ini: sinkronisasi"
        " malam berikutnya memprosesnya dan baris itu hilang dari daftar ini. Pada malam"
        " terakhir baris mendapat pemberitahuan terakhir, lalu tidak diperiksa lagi."
    )


@dataclass(frozen=True, slots=True)
class Waiting:
    """A row of the run waiting on a field officer: its outcome and since when it waits."""

    outcome: RowOutcome
    since: date
    #: The last night it is checked: its date (an unreadable one: ``since``) plus ACTION_DAYS.
    until: date

    def last_notice(self, run_date: str) -> bool:
        return self.until.isoformat() <= run_date


def officer_rows(
    run: RunState,
    outcomes: Sequence[RowOutcome],
    stored: Sequence[WaitingRow],
    action_days: int,
) -> list[Waiting]:
    """The run's rows waiting on a field officer (``outcomes`` of ``NEEDS_OFFICER``), each with
    since when it waits and the last night it is checked; ``stored``: the store's waiting rows
    (those of this run say the row's date)."""
    dated = {
        w.row: w.sheet_date
        for w in stored
        if (w.run_date, w.execution) == (run.run_date, run.execution)
    }
    out = []
    for outcome in outcomes:
        if outcome.status not in NEEDS_OFFICER:
            continue
        since = date.fromisoformat(outcome.since or run.run_date)
        sheet_date = dated.get(outcome.row)
        start = date.fromisoformat(sheet_date) if sheet_date else since
        out.append(Waiting(outcome, since, start + timedelta(days=action_days)))
    return out


def report_values(
    run_date: str,
    waiting: Sequence[Waiting],
    sheet_rows: Iterable[SheetRow],
    written_at: str,
    action_days: int,
) -> list[list[str]]:
    """The tab's cells: a title row, the header, then one row per row waiting on an officer.

    ``sheet_rows`` gives each row's date and name as typed; a sheet row whose NIK no longer
    matches the outcome (the sheet was edited since the run read it) leaves them blank rather
    than show another person's name.
    """
    by_row = {r.row: r for r in sheet_rows}
    typed = [(w, _typed(w.outcome, by_row.get(w.outcome.row))) for w in waiting]
    typed.sort(key=lambda pair: _newest_first(pair[0].outcome, pair[1][0]))
    values = [[title(run_date, len(waiting), written_at, action_days)], HEADER]
    for w, (day, name) in typed:
        outcome = w.outcome
        problem, action = GUIDANCE[outcome.status]
        values.append(
            [
                str(outcome.row),
                day,
                redact(name),
                outcome.nik_masked,
                problem,
                (LAST_NOTICE if w.last_notice(run_date) else "") + action,
                _sheet_form(w.since),
                _sheet_form(w.until),
                redact(outcome.reason),
            ]
        )
    return values


def _sheet_form(day: date) -> str:
    """As the officers write dates (DD-MM-YYYY)."""
    return day.strftime("%d-%m-%Y")


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


def waiting_of(settings: Settings, store: StateStore, run: RunState) -> list[Waiting] | None:
    """The finished run's rows waiting on a field officer, logged as one ``officer_rows`` line
    (how many, the oldest wait, the last notices); None when the store cannot say (logged).
    Never raises: a finished run stays as it finished."""
    try:
        outcomes = store.outcomes(run.run_date, NEEDS_OFFICER)
        stored = store.waiting_rows() if outcomes else []
    except Exception as exc:
        log_event(
            "officer_rows_unknown",
            f"the rows waiting on an officer could not be read: {exc}",
            severity=logging.ERROR,
            reason=str(exc),
        )
        return None
    waiting = officer_rows(run, outcomes, stored, settings.action_days)
    _log_waiting(run, waiting)
    return waiting


def write_officer_report(
    settings: Settings, store: StateStore, run: RunState, waiting: Sequence[Waiting] | None
) -> None:
    """Replace the officers' report tab with the run's rows waiting on a field officer
    (``waiting``, from :func:`waiting_of`), when a tab is configured.

    Never raises: a report that cannot be written must not fail (and so retry) a finished run.
    The tab's outcome is logged (``report_written`` / ``report_failed``, counted by a
    log-based metric) and kept with the run for ``phonesync status``.
    """
    if not settings.report_sheet_id:
        return
    from common.sheets_api import replace_tab, write_token

    tab = settings.report_sheet_tab
    try:
        if waiting is None:
            raise RuntimeError("the rows waiting on an officer could not be read")
        rows = read_rows(settings) if waiting else []  # the date and name as typed
        written_at = jakarta_time(time.time())
        values = report_values(run.run_date, waiting, rows, written_at, settings.action_days)
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
        detail = f"written: {len(waiting)} row(s) to tab {tab!r} at {jakarta_time(time.time())}"
        log_event(
            "report_written",
            f"{len(waiting)} row(s) to the officers' tab {tab!r}",
            tab=tab,
            rows=len(waiting),
        )
    try:
        store.set_report(run.run_date, run.execution, detail)
    except Exception as exc:  # the tab's fate stays in the log line above
        log_event("report_unrecorded", str(exc), severity=logging.WARNING)


def _log_waiting(run: RunState, waiting: Sequence[Waiting]) -> None:
    """One ``officer_rows`` line per finished run, rows or none: the metrics of rows waiting
    and of the oldest wait (in days) read it, and the wait alert closes on a night that
    reports none too old."""
    today = date.fromisoformat(run.run_date)
    oldest = min((w.since for w in waiting), default=today)
    last = [w for w in waiting if w.last_notice(run.run_date)]
    log_event(
        "officer_rows",
        f"{len(waiting)} row(s) waiting on a field officer"
        + (f", the oldest since {oldest} ({(today - oldest).days} days)" if waiting else "")
        + (f", {len(last)} on its last night" if last else ""),
        waiting=len(waiting),
        oldest_wait_days=(today - oldest).days,
        oldest_since=oldest.isoformat() if waiting else None,
        last_notices=len(last),
        by_status=summarize([w.outcome for w in waiting]),
    )
