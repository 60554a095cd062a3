"""The ``phonesync`` command: one entry point for every mode."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from common.bundle import reading
from common.cloud_access import CloudAccessError, as_cloud_access_error
from common.drift import DEFAULT_DAYS, DEFAULT_MAX_REPAIRS
from common.errors import ConfigError, InputError
from common.jakarta import jakarta_now_iso
from common.outcomes import summarize
from common.phones import PhoneFormat
from common.planning import DateWindow
from common.sheet import read_csv
from common.store import StateStore
from common.transform import transform, write_report
from jobs import help_texts as texts
from jobs.outputs import destination, refuse_overwriting, write_output
from jobs.wording import by_status, count

if TYPE_CHECKING:
    from common.config import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
#: Google Cloud out of reach (no credentials, an emulator that does not answer): for every
#: command, and not one of `phonesync status`'s codes (0, 1, 3-6), so never read as a run's.
EXIT_CLOUD_ACCESS = 7
#: `reconcile`: drift found (as `status` says "needs action").
EXIT_DRIFT = 3


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


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("phonesync")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="phonesync",
        description=texts.MAIN.description,
        epilog=texts.MAIN.epilog,
        formatter_class=texts.Formatter,
    )
    parser.add_argument("--version", action="version", version=f"phonesync {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, text: texts.CommandHelp) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=text.summary,
            description=text.description,
            epilog=text.epilog,
            formatter_class=texts.Formatter,
        )

    sub.add_parser("fhir-sim", help="FHIR R4 + Sheets API simulator (see phonesync fhir-sim -h)")
    t = command("transform", texts.TRANSFORM)
    t.add_argument("--sheet", required=True, type=Path, metavar="CSV", help="sheet exported as CSV")
    t.add_argument("--bundle", required=True, type=Path, metavar="JSON", help="patients JSON")
    t.add_argument(
        "--date",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="only rows of this date take part (default: every row; per NIK the latest wins)",
    )
    t.add_argument(
        "--now",
        type=iso_timestamp,
        metavar="ISO8601",
        help="meta.lastUpdated to set on changed patients (default: now, WIB)",
    )
    t.add_argument(
        "--out", type=Path, metavar="FILE", help="the updated bundle (default and -: stdout)"
    )
    t.add_argument(
        "--report", type=Path, metavar="FILE", help="the per-row JSON report (-: stdout)"
    )
    t.add_argument(
        "--phone-format",
        choices=[f.value for f in PhoneFormat],
        default=PhoneFormat.NATIONAL.value,
        help="numbers as 0812... (national, default) or +62812... (e164)",
    )
    t.set_defaults(handler=cmd_transform)

    r = command("run", texts.RUN)
    r.add_argument(
        "--date",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="run date (env RUN_DATE; default today, WIB)",
    )
    add_source_flags(r)
    r.add_argument(
        "--tasks",
        type=int,
        metavar="N",
        help="run N task processes locally, split as on Cloud Run",
    )
    r.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="per FHIR request (env FHIR_TIMEOUT_SECONDS)",
    )
    r.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="how long a down FHIR server is waited for (env FHIR_DEADLINE_SECONDS)",
    )
    r.add_argument(
        "--lookback-days",
        type=int,
        metavar="N",
        help="also take unapplied rows of the previous N days (env LOOKBACK_DAYS)",
    )
    add_state_flags(r)
    r.set_defaults(handler=cmd_run)

    st = command("status", texts.STATUS)
    st.add_argument(
        "--date", type=iso_date, metavar="YYYY-MM-DD", help="run date (default: today, WIB)"
    )
    add_state_flags(st)
    st.set_defaults(handler=cmd_status)

    rp = command("report", texts.REPORT)
    rp.add_argument("--date", type=iso_date, required=True, metavar="YYYY-MM-DD", help="run date")
    rp.add_argument("--format", choices=["csv", "json"], default="csv", help="default: csv")
    rp.add_argument("--out", type=Path, metavar="FILE", help="write here (default and -: stdout)")
    add_state_flags(rp)
    rp.set_defaults(handler=cmd_report)

    rl = command("replay", texts.REPLAY)
    rl.add_argument("--date", type=iso_date, required=True, metavar="YYYY-MM-DD", help="run date")
    rl.add_argument(
        "--status",
        choices=["deferred", "error"],
        default="deferred",
        help="the rows to replay (default: deferred)",
    )
    rl.add_argument(
        "--row", type=int, nargs="+", default=[], metavar="N", help="only these sheet rows"
    )
    rl.add_argument(
        "--dry-run",
        action="store_true",
        help="list the rows, change nothing (needs the store only)",
    )
    rl.add_argument(
        "--via",
        choices=["pubsub", "direct"],
        help="pubsub: re-publish to the failure topic (the replay function applies them);"
        " direct: this machine calls --fhir-url. Required unless --dry-run",
    )
    rl.add_argument(
        "--topic", metavar="TOPIC", help="--via pubsub: the failure topic (env FAILURE_TOPIC)"
    )
    rl.add_argument(
        "--fhir-url",
        metavar="URL",
        help="--via direct: FHIR base URL to replay against (env FHIR_BASE_URL)",
    )
    add_state_flags(rl)
    rl.set_defaults(handler=cmd_replay)

    rc = command("reconcile", texts.RECONCILE)
    rc.add_argument(
        "--since",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="first sheet date of the window (default: --days before --until)",
    )
    rc.add_argument(
        "--until",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="last sheet date (default: the newest date every nightly run has taken:"
        " today, WIB, less 1 + LOOKBACK_DAYS days)",
    )
    rc.add_argument(
        "--days",
        type=int,
        metavar="N",
        help=f"without --since: the window's N dates ending at --until (default {DEFAULT_DAYS})",
    )
    rc.add_argument(
        "--repair",
        action="store_true",
        help="write the sheet's number for missing and different NIKs (default: read-only)",
    )
    rc.add_argument(
        "--repair-registry-newer",
        action="store_true",
        help="with --repair: also overwrite numbers another writer set after phonesync's",
    )
    rc.add_argument(
        "--max-repairs",
        type=int,
        default=DEFAULT_MAX_REPAIRS,
        metavar="N",
        help=f"write at most N patients (default {DEFAULT_MAX_REPAIRS})",
    )
    rc.add_argument("--format", choices=["text", "json"], default="text", help="default: text")
    add_source_flags(rc)
    add_state_flags(rc)
    rc.set_defaults(handler=cmd_reconcile)

    dr = command("drift", texts.DRIFT)
    dr.add_argument(
        "--reconcile", metavar="ID", help="the reconcile (its execution; default: the latest)"
    )
    dr.add_argument("--format", choices=["csv", "json"], default="csv", help="default: csv")
    dr.add_argument("--out", type=Path, metavar="FILE", help="write here (default and -: stdout)")
    add_state_flags(dr)
    dr.set_defaults(handler=cmd_drift)
    return parser


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """The sheet and FHIR flags of a command that reads both (`run`, `reconcile`)."""
    parser.add_argument(
        "--sheet",
        type=Path,
        metavar="CSV",
        help="a CSV export instead of the Sheets API (env SHEET_CSV)",
    )
    parser.add_argument("--sheet-id", metavar="ID", help="Google Sheet id (env SHEET_ID)")
    parser.add_argument("--fhir-url", metavar="URL", help="FHIR base URL (env FHIR_BASE_URL)")
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="concurrent FHIR requests per task, at most (env FHIR_CONCURRENCY)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        metavar="N",
        help="FHIR requests/s per task, 0 = unlimited (env FHIR_RATE_LIMIT)",
    )
    parser.add_argument(
        "--phone-format",
        choices=[f.value for f in PhoneFormat],
        help="national (0812..., default) or e164 (env PHONE_FORMAT)",
    )


def add_state_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="STORE",
        help="sqlite, firestore, or a SQLite file path (env STATE_BACKEND / STATE_PATH)",
    )
    parser.add_argument(
        "--project",
        metavar="PROJECT",
        help="Google Cloud project for firestore (env GOOGLE_CLOUD_PROJECT)",
    )


def open_state_from(args: argparse.Namespace) -> StateStore:
    """The store the job uses: the settings (``STATE_BACKEND``, ``STATE_PATH``,
    ``GOOGLE_CLOUD_PROJECT``) with ``--state``/``--project`` over them."""
    from common.config import load_settings
    from common.runtime import open_store

    settings = load_settings(overrides=state_overrides(args), role="store")
    if settings.state_backend == "sqlite" and not settings.state_path.exists():
        raise InputError(
            f"no local state at {settings.state_path}: run `phonesync run` first, or pass --state"
        )
    return open_store(settings)


def cmd_status(args: argparse.Namespace) -> int:
    from common.config import jakarta_today
    from jobs.operator import render_status, status_exit_code

    run_date = (args.date or jakarta_today()).isoformat()
    store = open_state_from(args)
    try:
        run = store.get_run(run_date)
        outcomes = store.outcomes(run_date) if run is not None else []
        print(
            render_status(
                run, store.shard_states(run_date), run_date, sys.stdout.isatty(), outcomes
            )
        )
    finally:
        store.close()
    return status_exit_code(run)


def cmd_report(args: argparse.Namespace) -> int:
    from jobs.operator import render_report

    store = open_state_from(args)
    try:
        outcomes = store.outcomes(args.date.isoformat())
    finally:
        store.close()
    if not outcomes:
        raise InputError(f"no outcomes recorded for {args.date.isoformat()}")
    payload = render_report(outcomes, args.format)
    write_output(args.out, lambda out: out.write(payload))
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile the window: one Cloud Run task's shard, or everything for a person."""
    from datetime import timedelta

    from common.config import load_settings
    from common.fhir import FhirAuthError, FhirServerUnfit, FhirTransientError
    from common.reconcile import ReconcileOptions, run_reconcile, settled_until
    from common.runtime import open_store
    from common.telemetry import configure_logging, on_cloud_run

    overrides: dict[str, object] = {
        "sheet_csv": args.sheet,
        "sheet_id": args.sheet_id,
        "phone_format": args.phone_format,
        "fhir": {
            "base_url": args.fhir_url,
            "concurrency": args.concurrency,
            "rate_limit": args.rate_limit,
        },
        **state_overrides(args),
    }
    try:
        settings = load_settings(overrides=overrides, role="reconcile")
    except ConfigError as exc:
        if not on_cloud_run():  # a person: one line per problem (main)
            raise
        configure_logging()  # a Cloud Run task: its one config_invalid line
        return log_refusal(exc)
    if args.since is not None and args.days is not None:
        raise InputError("give --since or --days, not both")
    if args.days is not None and args.days < 1:
        raise InputError("--days must be at least 1")
    if args.max_repairs < 0:
        raise InputError("--max-repairs must be 0 or more")
    if args.repair_registry_newer and not args.repair:
        raise InputError("--repair-registry-newer only widens --repair: give both")
    until = args.until or settled_until(settings.lookback_days)
    since = args.since or until - timedelta(days=(args.days or DEFAULT_DAYS) - 1)
    if since > until:
        raise InputError(f"--since {since} is after --until {until}: the window is empty")
    options = ReconcileOptions(
        since, until, args.repair, args.repair_registry_newer, args.max_repairs
    )
    if on_cloud_run():
        from jobs.reconcile_task import run_reconcile_task

        configure_logging()
        return run_reconcile_task(settings, options)

    from jobs.reconcile_views import render_counts, render_json

    log = settings.state_path.parent / "logs" / f"{settings.execution}-reconcile.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    try:
        with log.open("w") as lines:
            configure_logging(stream=lines)
            try:
                result = run_reconcile(settings, store, options)
            finally:
                configure_logging(log_format=settings.log_format)
    except FhirServerUnfit as exc:  # nothing compared: a wrong --fhir-url is a usage error
        raise InputError(str(exc)) from None
    except (FhirTransientError, FhirAuthError) as exc:
        print(f"phonesync: error: the FHIR server did not answer: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    if args.format == "json":
        write_output(None, lambda out: out.write(render_json(result)))
    else:
        print(render_counts(result, str(log)))
    if result.failed:
        return EXIT_FAILED
    return EXIT_DRIFT if result.drift_left else EXIT_OK


def cmd_drift(args: argparse.Namespace) -> int:
    from jobs.reconcile_views import describe, render_drift

    store = open_state_from(args)
    try:
        run = store.get_reconcile(args.reconcile) if args.reconcile else store.latest_reconcile()
        if run is None:
            raise InputError(
                f"no reconcile {args.reconcile} recorded"
                if args.reconcile
                else "no reconcile recorded: run `phonesync reconcile` first"
            )
        rows = store.drift_rows(run.reconcile_id)
    finally:
        store.close()
    print(describe(run, len(rows)), file=sys.stderr)
    payload = render_drift(rows, args.format)
    write_output(args.out, lambda out: out.write(payload))
    return EXIT_OK


def cmd_transform(args: argparse.Namespace) -> int:
    outputs = {"--out": destination(args.out)}
    if args.report is not None:
        outputs["--report"] = destination(args.report)
    refuse_overwriting(
        outputs,
        {"--sheet": args.sheet, "--bundle": args.bundle},
        allowed={("--out", "--bundle")},  # read whole before it is renamed over: docs/guide.md
    )
    with collector_paused(), reading(args.bundle, str(args.bundle)) as bundle:
        rows = read_csv(args.sheet)  # while the bundle is indexed
        outcomes = write_output(
            args.out,
            lambda out: transform(
                rows,
                bundle,
                out,
                window=DateWindow.exactly(args.date) if args.date else None,
                fmt=PhoneFormat(args.phone_format),
                last_updated=args.now or jakarta_now_iso(),
            ),
        )
        if args.report:
            write_output(args.report, lambda out: write_report(outcomes, out))
    summary = (
        f"{count(len(outcomes), 'row')}: {by_status(summarize(outcomes))}"
        if outcomes
        else "no rows below the sheet's header: the bundle is written unchanged"
    )
    print(f"phonesync transform: {summary}", file=sys.stderr)
    return EXIT_OK


def state_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings ``--state`` (sqlite, firestore or a SQLite path) and ``--project`` give."""
    chosen: dict[str, object] = {"google_cloud_project": args.project}
    if args.state in ("sqlite", "firestore"):
        chosen["state_backend"] = args.state
    elif args.state is not None:
        chosen.update(state_backend="sqlite", state_path=Path(args.state))
    return chosen


def cmd_run(args: argparse.Namespace) -> int:
    from common.config import load_settings
    from common.runtime import open_store
    from common.telemetry import configure_logging
    from jobs.local import run_tasks

    overrides: dict[str, object] = {
        "run_date": args.date,
        "sheet_csv": args.sheet,
        "sheet_id": args.sheet_id,
        "lookback_days": args.lookback_days,
        "phone_format": args.phone_format,
        "fhir": {
            "base_url": args.fhir_url,
            "concurrency": args.concurrency,
            "rate_limit": args.rate_limit,
            "timeout_seconds": args.timeout,
            "deadline_seconds": args.deadline,
        },
        **state_overrides(args),
    }
    if args.tasks is None:
        return run_one_task(overrides)
    if args.tasks < 1:
        raise InputError("--tasks must be at least 1")
    overrides["cloud_run_task_count"] = args.tasks
    config = load_settings(overrides=overrides)  # a person at a terminal: errors on stderr
    configure_logging(log_format=config.log_format)
    store = open_store(config)
    try:
        open_what_tasks_open(config)
        return run_tasks(config, args.tasks, store)
    finally:
        store.close()


def run_one_task(overrides: dict[str, object]) -> int:
    """One task, as Cloud Run runs it, logging as ``LOG_FORMAT`` says. A configuration, secret or
    Google Cloud access that is unusable is, where lines are JSON (Cloud Run), one
    ``config_invalid`` or ``cloud_access_failed`` line with a severity; for a person, main's
    one line on stderr."""
    from common.config import load_settings
    from common.telemetry import LogFormat, configure_logging, writes_json

    log_format: LogFormat = "auto"  # until the settings are read: LOG_FORMAT may be the problem
    configure_logging(log_format=log_format)
    try:
        config = load_settings(overrides=overrides)
        log_format = config.log_format
        configure_logging(log_format=log_format)
        from jobs.task import run_task

        return run_task(config)
    except Exception as exc:
        refused = as_cloud_access_error(exc) or (exc if isinstance(exc, InputError) else None)
        if refused is None or not writes_json(log_format):
            raise
        return log_refusal(refused)


def log_refusal(exc: InputError) -> int:
    """The task's one ERROR line for a run that cannot start here, and its exit code. Cloud Run
    retries it like any non-zero exit (on Cloud Run, credentials missing means the metadata
    server did not answer, which a retry can outlast)."""
    from common.telemetry import log_event

    if isinstance(exc, CloudAccessError):
        log_event(
            "cloud_access_failed",
            f"cannot reach Google Cloud: {exc}",
            severity=logging.ERROR,
            reason=str(exc),
        )
        return EXIT_CLOUD_ACCESS
    problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
    log_event(
        "config_invalid",
        "invalid configuration: " + "; ".join(problems),
        severity=logging.ERROR,
        reason="; ".join(problems),
        problems=problems,
    )
    return EXIT_INPUT


def open_what_tasks_open(config: Settings) -> None:
    """Read the secrets and open the publisher the task processes will, once, here: a secret or
    Google Cloud out of reach is then one line from ``run --tasks N``, before any task starts,
    instead of N task logs and a run left running."""
    from common.runtime import fhir_settings, ledger_key

    fhir_settings(config)
    ledger_key(config)
    if config.failure_topic:
        from common.failures import FailurePublisher

        FailurePublisher()


def cmd_replay(args: argparse.Namespace) -> int:
    """List the chosen rows; unless --dry-run, replay them the way --via names (never guessed)."""
    import asyncio

    from common.config import load_settings
    from common.outcomes import Status
    from jobs.operator import replay_candidates

    if not args.dry_run and args.via is None:
        raise InputError(
            "say how to replay: --via pubsub (re-publish; the replay function applies them) or"
            " --via direct (this machine calls --fhir-url); --dry-run only lists the rows"
        )
    config = None
    if not args.dry_run:  # a dry run needs the store only
        overrides = {
            **state_overrides(args),
            "fhir": {"base_url": args.fhir_url if args.via == "direct" else None},
            "failure_topic": args.topic if args.via == "pubsub" else None,
        }
        config = load_settings(
            overrides=overrides, role="publish" if args.via == "pubsub" else "replay"
        )
    store = open_state_from(args)
    try:
        run_date = args.date.isoformat()
        items = replay_candidates(store, run_date, Status(args.status), args.row)
        if config is None:
            where = "(dry run: nothing changed)"
        elif args.via == "pubsub":
            where = f"by re-publishing to {config.failure_topic}"
        else:
            where = f"directly against {config.fhir.base_url}"
        chosen = count(len(items), f"{args.status} row")
        print(f"{chosen} of {run_date} to replay {where}", file=sys.stderr)
        for item in items:
            print(f"  row {item.row}", file=sys.stderr)
        if config is None or not items:
            return EXIT_OK
        run = store.get_run(run_date)
        execution = run.execution if run is not None else ""  # the items are its manifest's
        if args.via == "pubsub":
            from common.failures import FailureMessage, FailurePublisher, topic_path

            reason = f"re-published by an operator (was {args.status})"
            FailurePublisher().publish_many(
                topic_path(str(config.google_cloud_project), str(config.failure_topic)),
                [FailureMessage.of(i, run_date, execution, reason, 0) for i in items],
            )
            return EXIT_OK
        from common.fhir import FhirServerUnfit, FhirTransientError
        from common.replay import replay_directly

        try:
            counts = asyncio.run(replay_directly(config, store, run_date, items))
        except FhirServerUnfit as exc:  # nothing replayed: a wrong --fhir-url is a usage error
            raise InputError(str(exc)) from None
        except FhirTransientError as exc:
            print(f"phonesync: error: the FHIR server did not answer: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"replayed: {by_status(counts)}", file=sys.stderr)
    finally:
        store.close()
    return EXIT_OK


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many objects that cannot form cycles.

    Parsed JSON, sheet rows and outcomes have no cycles, so there is nothing for the collector
    to find; yet every burst of allocations makes it traverse everything alive so far. A
    profile of ``transform`` on 100,000 patients showed ~14 % of its time in the collector.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fhir-sim"]:  # a tool for tests and demos, with its own parser (sim/)
        from sim.server import main as sim_main

        return sim_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `phonesync`: say what there is
        parser.print_help()
        return EXIT_OK
    try:
        return int(args.handler(args))
    except CloudAccessError as exc:
        return cloud_access_refused(exc)
    except ConfigError as exc:  # one line per problem, each naming the setting
        for problem in exc.problems:
            print(f"phonesync: error: {problem}", file=sys.stderr)
        return EXIT_INPUT
    except InputError as exc:
        print(f"phonesync: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # stdout's reader left (`… | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # google-auth's own, from a client not opened by common.cloud_access
        refused = as_cloud_access_error(exc)
        if refused is None:
            raise
        return cloud_access_refused(refused)


def cloud_access_refused(exc: CloudAccessError) -> int:
    print(f"phonesync: error: {exc}", file=sys.stderr)
    return EXIT_CLOUD_ACCESS


if __name__ == "__main__":
    sys.exit(main())
