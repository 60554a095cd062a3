"""Running the simulator: ``phonesync fhir-sim`` in the foreground, or in a thread for tests."""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from common.errors import InputError
from common.sheet import read_csv_text
from sim.app import create_app, load_bundle_patients


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )


@contextmanager
def run_in_thread(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` on loopback in a background thread; yields its base URL (no ``/fhir``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(_config(app, host, sock.getsockname()[1]))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


DESCRIPTION = """\
A FHIR R4 server for tests, the demo and benchmarks (not part of the job): Patient search,
read, update and JSON Patch (If-Match), batch Bundles, a CapabilityStatement; faults on demand
(latency, 5xx, 429 rate limits, outages, an API key or OAuth2 bearer tokens). With --sheet
it also serves the Sheets API reads of that CSV, and the writes the report tab needs.
It serves until stopped."""

EPILOG = """\
example (from a checkout):
  phonesync fhir-sim --bundle examples/patients-data.json --port 8080 --api-key KEY \\
    --latency-ms 150 --error-rate 0.01 --rate-limit 200

its own endpoints:
  GET  /_sim/stats    requests by method and status, PUTs per patient
  GET  /_sim/bundle   the patients as they are now
  POST /_sim/down     {"down": true} simulates an outage, {"down": false} ends it"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="phonesync fhir-sim",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
            prog, max_help_position=24
        ),
    )
    p.add_argument(
        "--bundle",
        metavar="JSON",
        type=Path,
        required=True,
        help="patients JSON (the sample's format)",
    )
    p.add_argument("--host", metavar="HOST", default="127.0.0.1", help="default: 127.0.0.1")
    p.add_argument("--port", metavar="PORT", type=int, default=8080, help="default: 8080")
    p.add_argument("--api-key", metavar="KEY", help="require this x-api-key on every FHIR request")
    p.add_argument(
        "--latency-ms",
        metavar="MS",
        type=float,
        default=0.0,
        help="median of the log-normal latency",
    )
    p.add_argument(
        "--error-rate",
        metavar="FRACTION",
        type=float,
        default=0.0,
        help="fraction of requests answering 500/503",
    )
    p.add_argument(
        "--rate-limit",
        metavar="N",
        type=float,
        help="requests/s before answering 429 + Retry-After",
    )
    p.add_argument(
        "--entry-cost-ms",
        metavar="MS",
        type=float,
        default=0.0,
        help="extra time a batch Bundle takes per entry, on top of --latency-ms",
    )
    p.add_argument(
        "--rate-limit-entries",
        action="store_true",
        help="the rate limit counts a batch Bundle's entries instead of one request",
    )
    p.add_argument(
        "--no-batch", action="store_true", help="refuse batch Bundles (POST [base] answers 404)"
    )
    p.add_argument(
        "--sheet", metavar="CSV", type=Path, help="serve this CSV as the Sheets API values.get"
    )
    p.add_argument("--seed", metavar="N", type=int, help="seed for latency and error injection")
    p.add_argument(
        "--oauth-client",
        nargs=2,
        metavar=("ID", "SECRET"),
        help="bearer mode: POST /oauth2/token grants tokens to this client; FHIR requires them",
    )
    p.add_argument(
        "--token-ttl",
        metavar="SECONDS",
        type=float,
        default=3600.0,
        help="token lifetime in seconds",
    )
    p.add_argument(
        "--write",
        choices=("update-and-patch", "patch-only", "update-only"),
        default="update-and-patch",
        help="Patient writes served and listed in /metadata; patch-only: PUT answers 405",
    )
    p.add_argument(
        "--patch-ops",
        choices=("add-replace", "replace-only"),
        default="add-replace",
        help="JSON Patch ops taken; replace-only: any op but replace and test answers 400",
    )
    p.add_argument(
        "--page-size",
        metavar="N",
        type=int,
        default=20,
        help="search results per page without _count",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        patients = load_bundle_patients(args.bundle)
        sheet_text = read_csv_text(args.sheet) if args.sheet else None
    except InputError as exc:
        print(f"phonesync fhir-sim: error: {exc}", file=sys.stderr)
        return 2
    app = create_app(
        patients,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        rate_limit=args.rate_limit,
        sheet_csv=sheet_text,
        seed=args.seed,
        page_size=args.page_size,
        batch=not args.no_batch,
        entry_cost_ms=args.entry_cost_ms,
        rate_limit_entries=args.rate_limit_entries,
        oauth_client=tuple(args.oauth_client) if args.oauth_client else None,
        token_ttl=args.token_ttl,
        write=args.write,
        patch_ops=args.patch_ops,
    )
    print(f"phonesync fhir-sim: FHIR base http://{args.host}:{args.port}/fhir", flush=True)
    uvicorn.Server(_config(app, args.host, args.port)).run()
    return 0
