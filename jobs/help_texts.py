"""What ``phonesync COMMAND -h`` says besides the flags: what the command is for, an example, and
the environment it reads. docs/cli.md is rendered from these (``python -m jobs.cli_reference``).

The texts are printed as written (``RawDescriptionHelpFormatter``): keep lines under 100
characters, and every example runnable from a checkout (tests parse each one).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; flags' help in a column at 24 (not argparse's
    narrow default), so most of them fit on their flag's line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            # argparse measures command names without the indent it prints them with, so the
            # longest one ("transform") would wrap onto a line of its own.
            longest = max(map(len, action.choices), default=0) + self._current_indent + 4
            self._action_max_length = max(self._action_max_length, longest)


@dataclass(frozen=True)
class CommandHelp:
    summary: str  # the line in `phonesync -h`
    description: str
    epilog: str


MAIN = CommandHelp(
    summary="",
    description="Nightly sync of patients' WhatsApp numbers from the field officers' Google"
    " Sheet\ninto the FHIR R4 registry, and the commands around it.",
    epilog="""\
start here:
  phonesync transform -h   try the sheet rules offline on the sample files in examples/
  ./scripts/demo           the nightly job end to end against the simulator

`phonesync COMMAND -h` describes a command; docs/cli.md has every command's help,
docs/guide.md the whole picture.""",
)

TRANSFORM = CommandHelp(
    summary="apply a sheet CSV to a patient bundle file (offline)",
    description="""\
Apply the officers' sheet, exported as CSV (UTF-8), to a patient bundle file: offline,
no server and no state. The updated bundle goes to --out (standard output when --out is
absent or -), a one-line summary to standard error, and the per-row report (row, masked
NIK, status, reason) to --report.

An --out or --report that is the sheet, the bundle (only --out may be: the bundle is
updated in place) or the other output is refused before anything is written.

Exit codes: 0 it ran (rejected rows included: they are in the report), 2 unusable input
(a missing file or column, a sheet that is not UTF-8, malformed JSON, a bad option).""",
    epilog="""\
example (from a checkout):
  phonesync transform --sheet examples/whatsapp-sheet.csv \\
    --bundle examples/patients-data.json --out out/after.json --report out/report.json""",
)

RUN = CommandHelp(
    summary="the nightly job (one Cloud Run task, or --tasks N locally)",
    description="""\
The nightly job. With no flags it is one Cloud Run task, configured by its environment
(below); its log lines are JSON on Cloud Run and short text elsewhere (LOG_FORMAT). With
--tasks N it starts N task processes on this machine, split as Cloud Run splits them,
shows a progress line and prints the counts by status; task logs (JSON) go to logs/ beside
the state file. Flags override the environment.

Exit codes: 0 every task finished, 1 a task failed (the reason is in `phonesync status`),
2 invalid configuration (every problem listed), 7 Google Cloud out of reach (no
credentials, or an emulator that does not answer: the line says how to provide it).""",
    epilog="""\
example (from a checkout), against the simulator:
  phonesync fhir-sim --bundle examples/patients-data.json --port 8080 &
  phonesync run --date 2025-09-23 --sheet examples/whatsapp-sheet.csv \\
    --fhir-url http://127.0.0.1:8080/fhir --tasks 2

environment (docs/configuration.md lists every variable):
  FHIR_BASE_URL           the FHIR R4 base URL (--fhir-url)
  FHIR_AUTH               how to authenticate to FHIR: api-key (default), oauth2 or google
  FHIR_API_KEY            api-key: the x-api-key, for local use
                          (on Cloud Run: FHIR_API_KEY_SECRET, a Secret Manager name)
  FHIR_TOKEN_URL          oauth2: the token endpoint (client credentials)
  FHIR_CLIENT_ID          oauth2: the client id
  FHIR_CLIENT_SECRET      oauth2: the client secret, for local use
                          (on Cloud Run: FHIR_CLIENT_SECRET_SECRET)
  FHIR_WRITE              auto (default): PUT or JSON Patch, as the server's
                          CapabilityStatement lists; update or patch force one
  SHEET_CSV, SHEET_ID     the sheet: a CSV export (--sheet) or a Google Sheet (--sheet-id)
  SHEETS_API_URL          the Sheets API endpoint; a simulator's (fhir-sim --sheet) to try
                          SHEET_ID and the officers' report tab locally
  SHEETS_ACCESS_TOKEN     a bearer token for the Sheets API in place of Application Default
                          Credentials; the simulator takes any value (local use only)
  REPORT_SHEET_ID         the spreadsheet the officers' report tab is written to
  STATE_BACKEND           sqlite (default) or firestore (--state)
  STATE_PATH              the SQLite file (default .phonesync/state.sqlite3)
  GOOGLE_CLOUD_PROJECT    the project of Firestore and Pub/Sub (--project)
  FAILURE_TOPIC           the Pub/Sub topic for deferred rows (required with firestore)
  LOG_FORMAT              auto (default: json on Cloud Run, text elsewhere), json or text
  CATCH_UP_DAYS           also take the dates no finished run covered, at most N days back (7)
  ACTION_DAYS             check rows waiting on a field officer again for N days (30)
  RUN_DATE, LOOKBACK_DAYS, PHONE_FORMAT, FHIR_CONCURRENCY, FHIR_RATE_LIMIT,
  FHIR_TIMEOUT_SECONDS, FHIR_DEADLINE_SECONDS: as the flags above""",
)

STATE_ENVIRONMENT = """\
environment:
  STATE_BACKEND, STATE_PATH   the store, as `phonesync run` uses it (--state)
  GOOGLE_CLOUD_PROJECT        the project with --state firestore (--project); Firestore
                              needs `gcloud auth application-default login` (or
                              GOOGLE_APPLICATION_CREDENTIALS), or FIRESTORE_EMULATOR_HOST"""

STATUS = CommandHelp(
    summary="a run's state and each shard's progress and task (works mid-run)",
    description="""\
A run's state, execution, start time, the dates it covers (missed nights caught up, dates
not synced yet), each shard's progress and the task holding it (or gone, its lease
expired), counts by status and, by name, the rows someone must act on (the first 20; all of
them: `phonesync report`).

Exit codes, so scripts can rely on them: 0 succeeded, 3 needs_action (rows for a field
officer), 4 partial (rows deferred or in error), 5 running, 1 failed, 6 no run recorded
for the date, 2 usage error, 7 the store is out of reach (no Google Cloud credentials, or
an emulator that does not answer: nothing is known about the run).""",
    epilog=f"""\
example:
  phonesync status --date 2025-09-23

{STATE_ENVIRONMENT}""",
)

REPORT = CommandHelp(
    summary="one line per row of the run's window: row, masked NIK, status, reason",
    description="""\
One line per row of a run's window (and per row whose date cannot be read): sheet row,
masked NIK, status, reason, warning, patient id: the list a field officer needs to fix
the sheet. Rows dated outside the window are only counted (see `phonesync status`).

Exit codes: 0 written, 2 no outcomes recorded for the date or a usage error, 7 the store
is out of reach (no Google Cloud credentials, or an emulator that does not answer).""",
    epilog=f"""\
example:
  phonesync report --date 2025-09-23 --format csv --out out/report.csv

{STATE_ENVIRONMENT}""",
)

REPLAY = CommandHelp(
    summary="retry chosen rows of a date: --via pubsub (re-publish) or --via direct",
    description="""\
Retry the rows of a date whose outcome is deferred (or error, with --status error),
optionally only --row N ...: --dry-run lists them and needs nothing but the store;
--via pubsub re-publishes them to the failure topic for the replay function (production);
--via direct replays them from this machine against --fhir-url, after the job's check of
that server. A row is replayed only if its run planned it, and never over a newer number.

Exit codes: 0 done, 1 the FHIR server did not answer, 2 usage error (or --fhir-url is not
a FHIR R4 server with Patient search and a write (update or patch)), 7 Google Cloud out of reach (the store
or Pub/Sub: no credentials, or an emulator that does not answer).""",
    epilog=f"""\
examples:
  phonesync replay --date 2025-09-23 --status deferred --dry-run
  phonesync replay --date 2025-09-23 --via direct --fhir-url http://127.0.0.1:8080/fhir
  phonesync replay --date 2025-09-23 --via pubsub --state firestore --project my-project \\
    --topic phonesync-failures

{STATE_ENVIRONMENT}
  FAILURE_TOPIC               --via pubsub: the topic (--topic)
  FHIR_BASE_URL               --via direct: the server (--fhir-url), with the FHIR
                              credentials `phonesync run -h` lists""",
)

RECONCILE = CommandHelp(
    summary="compare the registry with the sheet: drift per NIK, --repair to fix it",
    description="""\
For every NIK whose newest sheet row falls in --since..--until, compare the registry's
mobile number with the sheet's and put the NIK in one class: in_sync, format_only (same
number, other spelling), missing (no mobile entry), different (another number: lost),
registry_newer (another writer changed the patient after phonesync's last write),
not_found, ambiguous; unchecked when the registry did not answer. The registry's answer
decides, not the ledger. Read-only unless --repair: it writes the sheet's number for
missing and different NIKs through the job's own path (If-Match, batch, ledger), at most
--max-repairs; registry_newer only with --repair-registry-newer. The counts go to
standard output (--format json: one document with the drift rows, masked NIKs), the drift
rows to the store (`phonesync drift` lists them), JSON logs beside the state file.

On Cloud Run (the job's image, an execution with overrides) each task reconciles its
shard of the NIKs, as the nightly run splits them; the last to finish logs the counts.

Exit codes: 0 in sync (format_only included; after --repair: nothing left), 3 drift
found (or left), 1 failure (NIKs unchecked, a repair failed, FHIR not answering),
2 usage error (or --fhir-url is not a FHIR R4 server with Patient search and a write (update or patch)).
On Cloud Run drift exits 0: the drift metric and its alert report it.""",
    epilog=f"""\
examples:
  phonesync reconcile --since 2025-09-01 --until 2025-09-23 \\
    --sheet examples/whatsapp-sheet.csv --fhir-url http://127.0.0.1:8080/fhir
  phonesync reconcile --since 2025-09-01 --until 2025-09-23 --sheet-id SHEET \\
    --fhir-url https://registry.example/fhir --repair --max-repairs 50 --format json

The sheet, FHIR and state options are `phonesync run`'s, and so is the environment
(`phonesync run -h`).
{STATE_ENVIRONMENT}""",
)

DRIFT = CommandHelp(
    summary="one line per drifted NIK of a reconcile: row, masked NIK, class, repair",
    description="""\
The drift rows a reconcile recorded (the latest one, or --reconcile ID): sheet row,
masked NIK, class, sheet date, patient id, reason and what --repair did. in_sync NIKs
are only counted (`phonesync reconcile` prints the counts). CSV (default) or JSON.""",
    epilog=f"""\
example:
  phonesync drift --format csv --out out/drift.csv

{STATE_ENVIRONMENT}""",
)
