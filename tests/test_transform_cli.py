"""The offline ``phonesync transform`` command, end to end through its CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHEET = EXAMPLES / "whatsapp-sheet.csv"
BUNDLE = EXAMPLES / "patients-data.json"
NOW = "2025-09-23T23:45:00.123456+07:00"


def run(tmp_path: Path, *extra: str, sheet: Path = SHEET) -> tuple[int, dict, dict]:  # type: ignore[type-arg]
    out, rep = tmp_path / "out.json", tmp_path / "report.json"
    code = main(
        [
            "transform",
            "--sheet",
            str(sheet),
            "--bundle",
            str(BUNDLE),
            "--now",
            NOW,
            "--out",
            str(out),
            "--report",
            str(rep),
            *extra,
        ]
    )
    if code != 0:
        return code, {}, {}
    return code, json.loads(out.read_text()), json.loads(rep.read_text())


def test_sample_reproduces_the_reference_output_exactly(tmp_path: Path) -> None:
    code, out, report = run(tmp_path)
    assert code == 0
    reference = json.loads(BUNDLE.read_text())["patients_after_phone_update"]
    assert out["patients_after_phone_update"] == reference
    assert report["summary"] == {"updated": 10}


def test_output_is_two_space_indented_utf8(tmp_path: Path) -> None:
    run(tmp_path)
    text = (tmp_path / "out.json").read_text(encoding="utf-8")
    assert text.startswith('{\n  "patients_after_phone_update": [\n    {\n      "resource"')


def test_stdout_when_no_out_and_summary_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transform", "--sheet", str(SHEET), "--bundle", str(BUNDLE), "--now", NOW]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["patients_after_phone_update"]) == 10
    assert captured.err.strip() == "phonesync transform: 10 rows: updated 10"


def test_unassigned_range_is_applied_with_a_warning(tmp_path: Path) -> None:
    _, _, report = run(tmp_path)
    row6 = next(r for r in report["rows"] if r["row"] == 6)
    assert row6["status"] == "updated"
    assert "not assigned" in row6["warning"]


def test_date_filter_and_e164(tmp_path: Path) -> None:
    code, out, report = run(tmp_path, "--date", "2025-09-24", "--phone-format", "e164")
    assert code == 0
    assert report["summary"] == {"other_date": 10}
    code, out, _ = run(tmp_path, "--date", "2025-09-23", "--phone-format", "e164")
    first = out["patients_after_phone_update"][0]["resource"]
    assert first["telecom"][0]["value"] == "+6281234567890"


def test_report_for_a_messy_sheet_names_rows_and_reasons_without_pii(tmp_path: Path) -> None:
    sheet = tmp_path / "messy.csv"
    sheet.write_text(
        "nik_identifier,phone_number,last_updated_date\n"
        "3171044203920001,0812 0000 0000,23-09-2025\n"
        "3171044203920001,0812 1111 1111,23-09-2025\n"
        "3.17104E+15,081234567890,23-09-2025\n"
        "3578106207900002,021-5551234,23-09-2025\n"
        "3273044812940003,082345678901,31-02-2025\n"
        "9999999999999999,082345678901,23-09-2025\n"
    )
    code, out, report = run(tmp_path, sheet=sheet)
    assert code == 0
    rows = {r["row"]: (r["status"], r["reason"]) for r in report["rows"]}
    assert rows[2][0] == "superseded"
    assert rows[3][0] == "updated"
    assert rows[4] == ("invalid_nik", rows[4][1]) and rows[4][1].startswith("nik_identifier:")
    assert rows[5][0] == "invalid_phone" and rows[5][1].startswith("phone_number:")
    assert rows[6][0] == "invalid_date" and rows[6][1].startswith("last_updated_date:")
    assert rows[7][0] == "not_found"
    raw = (tmp_path / "report.json").read_text()
    for secret in ("3171044203920001", "3578106207900002", "081211111111", "0215551234"):
        assert secret not in raw
    patient1 = out["patients_after_phone_update"][0]["resource"]
    assert patient1["telecom"][0]["value"] == "081211111111"


def exit_code(argv: list[str]) -> int:
    """The process exit code, whether argparse exits or ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"--sheet": "/nonexistent.csv"}, "sheet file not found"),
        ({"--bundle": "/nonexistent.json"}, "bundle file not found"),
        ({"--date": "23-09-2025"}, "expected a date as YYYY-MM-DD"),
        ({"--now": "2025-09-23T23:45:00"}, "needs a UTC offset"),
    ],
)
def test_unusable_input_exits_2_with_one_clear_line(
    override: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {"--sheet": str(SHEET), "--bundle": str(BUNDLE), **override}
    assert exit_code(["transform", *[x for kv in options.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_malformed_json_and_missing_column_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["transform", "--sheet", str(SHEET), "--bundle", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    sheet = tmp_path / "s.csv"
    sheet.write_text("last_updated_date,nik_identifier\n")
    assert main(["transform", "--sheet", str(sheet), "--bundle", str(BUNDLE)]) == 2
    assert "missing required column 'phone_number'" in capsys.readouterr().err


def test_a_failed_run_leaves_the_previous_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "after.json"
    out.write_text("previous output")
    bad = tmp_path / "bad.json"
    bad.write_text('{"patients_before_phone_update": [{"resource": ')
    argv = ["transform", "--sheet", str(SHEET), "--bundle", str(bad), "--out", str(out)]
    assert main(argv) == 2
    assert out.read_text() == "previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["after.json", "bad.json"]


def test_the_bundle_can_be_transformed_in_place(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(BUNDLE.read_bytes())
    argv = ["transform", "--sheet", str(SHEET), "--bundle", str(bundle), "--now", NOW]
    assert main([*argv, "--out", str(bundle)]) == 0
    reference = json.loads(BUNDLE.read_text())["patients_after_phone_update"]
    assert json.loads(bundle.read_text())["patients_after_phone_update"] == reference
    report = tmp_path / "again.json"
    assert main([*argv, "--out", str(bundle), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["summary"] == {"unchanged": 10}


def test_a_reader_that_went_away_ends_the_run_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has what it wants
    command = [sys.executable, "-m", "jobs.cli", "transform", "--sheet", str(SHEET)]
    done = subprocess.run(
        [*command, "--bundle", str(BUNDLE)], stdout=write_end, stderr=subprocess.PIPE, timeout=60
    )
    os.close(write_end)
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (symlinks as where they point), by path, with its bytes."""
    return {
        str(p.relative_to(folder)): os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


# Each case: extra flags, where "{sheet}", "{bundle}" and "{dir}" are the copies in tmp_path.
COLLISIONS = {
    "report onto the bundle": ["--out", "{dir}/after.json", "--report", "{bundle}"],
    "out onto the sheet": ["--out", "{sheet}"],
    "report onto the sheet": ["--out", "{dir}/after.json", "--report", "{sheet}"],
    "out and report one file": ["--out", "{dir}/after.json", "--report", "{dir}/after.json"],
    "out and report one file spelled twice": [
        "--out",
        "{dir}/after.json",
        "--report",
        "{dir}/sub/../after.json",
    ],
    "report onto a hard link of the bundle": ["--out", "{dir}/a.json", "--report", "{dir}/hard"],
    "out onto a symlink to the sheet": ["--out", "{dir}/soft"],
    "report onto a symlink to the out file": [
        "--out",
        "{dir}/new.json",
        "--report",
        "{dir}/dangling",
    ],
    "report to stdout, out absent": ["--report", "-"],
    "both to stdout": ["--out", "-", "--report", "-"],
}


@pytest.mark.parametrize("extra", COLLISIONS.values(), ids=COLLISIONS.keys())
def test_an_output_onto_an_input_or_the_other_output_is_refused_and_nothing_changes(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet, bundle = tmp_path / "sheet.csv", tmp_path / "bundle.json"
    sheet.write_bytes(SHEET.read_bytes())
    bundle.write_bytes(BUNDLE.read_bytes())
    (tmp_path / "sub").mkdir()
    os.link(bundle, tmp_path / "hard")
    (tmp_path / "soft").symlink_to(sheet)
    (tmp_path / "dangling").symlink_to(tmp_path / "new.json")
    names = {"sheet": str(sheet), "bundle": str(bundle), "dir": str(tmp_path)}
    before = snapshot(tmp_path)
    argv = ["transform", "--sheet", str(sheet), "--bundle", str(bundle), "--now", NOW]
    assert exit_code([*argv, *(word.format(**names) for word in extra)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("phonesync: error: ") and err.count("\n") == 1, err
    assert "choose another file" in err or "its own file" in err or "to a file" in err
    assert snapshot(tmp_path) == before


def transform_process(cwd: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "jobs.cli", "transform", "--sheet", str(SHEET)]
    return subprocess.run(
        [*command, "--bundle", str(BUNDLE), "--now", NOW, *extra],
        cwd=cwd,
        capture_output=True,
        timeout=60,
    )


def test_a_dash_streams_the_bundle_or_the_report_to_stdout(tmp_path: Path) -> None:
    done = transform_process(tmp_path, "--out", "-", "--report", "report.json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["patients_after_phone_update"]) == 10
    assert json.loads((tmp_path / "report.json").read_bytes())["summary"] == {"updated": 10}
    done = transform_process(tmp_path, "--out", "after.json", "--report", "-")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"] == {"updated": 10}
    assert json.loads((tmp_path / "after.json").read_bytes())["patients_after_phone_update"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["after.json", "report.json"]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_sheet_that_is_not_utf8_exits_2_naming_the_row(
    encoding: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes(SHEET.read_text().replace("SITI", "SÍTI").encode(encoding))
    assert main(["transform", "--sheet", str(sheet), "--bundle", str(BUNDLE)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "save it as CSV UTF-8" in err
    assert "row 1" in err if encoding == "utf-16" else "row 6 is not UTF-8" in err  # SITI


@pytest.mark.parametrize(
    ("lines", "summary"),
    [
        (2, "phonesync transform: 1 row: updated 1"),
        (
            1,
            "phonesync transform: no rows below the sheet's header: the bundle is written unchanged",
        ),
    ],
)
def test_the_summary_counts_in_words(
    lines: int, summary: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("".join(SHEET.read_text().splitlines(keepends=True)[:lines]))
    out = tmp_path / "after.json"
    assert (
        main(["transform", "--sheet", str(sheet), "--bundle", str(BUNDLE), "--out", str(out)]) == 0
    )
    assert capsys.readouterr().err.strip() == summary
