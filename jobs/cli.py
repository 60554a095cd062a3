"""The ``phonesync`` command: one entry point for every mode."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import orjson

from common.errors import InputError
from common.outcomes import summarize
from common.patient import jakarta_now_iso
from common.phones import PhoneFormat
from common.planning import DateWindow
from common.sheet import read_csv
from common.transform import dump_bundle, load_entries, report, transform

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def iso_timestamp(text: str) -> str:
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 timestamp, got {text!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs a UTC offset, e.g. +07:00: {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one clear line (its default prints the whole usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"phonesync: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phonesync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("transform", help="apply a sheet CSV to a patient bundle file (offline)")
    t.add_argument("--sheet", required=True, type=Path, help="sheet exported as CSV")
    t.add_argument("--bundle", required=True, type=Path, help="patients JSON")
    t.add_argument("--date", type=iso_date, help="only rows of this date (YYYY-MM-DD) take part")
    t.add_argument("--now", type=iso_timestamp, help="meta.lastUpdated to set (default: now, WIB)")
    t.add_argument("--out", type=Path, help="write the updated bundle here (default: stdout)")
    t.add_argument("--report", type=Path, help="write the per-row JSON report here")
    t.add_argument(
        "--phone-format", choices=[f.value for f in PhoneFormat], default=PhoneFormat.NATIONAL.value
    )
    t.set_defaults(handler=cmd_transform)
    return parser


def cmd_transform(args: argparse.Namespace) -> int:
    rows = read_csv(args.sheet)
    entries = load_entries(args.bundle)
    result = transform(
        rows,
        entries,
        window=DateWindow.exactly(args.date) if args.date else None,
        fmt=PhoneFormat(args.phone_format),
        last_updated=args.now or jakarta_now_iso(),
    )
    payload = dump_bundle(result.entries)
    if args.out:
        write_file(args.out, payload)
    else:
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()
    if args.report:
        write_file(args.report, orjson.dumps(report(result.outcomes), option=orjson.OPT_INDENT_2))
    counts = summarize(result.outcomes)
    print(
        f"phonesync transform: {len(result.outcomes)} rows: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        file=sys.stderr,
    )
    return EXIT_OK


def write_file(path: Path, payload: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except InputError as exc:
        print(f"phonesync: error: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
