"""Reaching Google Cloud: every Google client (Firestore, Pub/Sub, Secret Manager, the Sheets
API's token) is opened through :func:`open_google_client`, so that missing credentials or an
emulator that does not answer is one line saying what is missing and how to provide it.

Without the check, a client opened without credentials raises google-auth's
``DefaultCredentialsError`` (a traceback from whichever command opened it), and one pointed at an
emulator that is not running retries its calls for minutes.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

from common.errors import InputError

#: How long an emulator (``FIRESTORE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``) may take to
#: accept a connection before it is reported as not answering.
EMULATOR_CONNECT_SECONDS = 2.0
_START = {
    "FIRESTORE_EMULATOR_HOST": "gcloud beta emulators firestore start --host-port={}",
    "PUBSUB_EMULATOR_HOST": "gcloud beta emulators pubsub start --host-port={}",
}
_KEY_FILE = "GOOGLE_APPLICATION_CREDENTIALS"

T = TypeVar("T")


class CloudAccessError(InputError):
    """Google Cloud cannot be reached from here: no credentials, or an emulator that does not
    answer. An :class:`InputError` (the run cannot proceed on what it was given) with an exit
    code of its own in the CLI, so that it is not taken for a run's status."""


def open_google_client(
    service: str, open_client: Callable[[], T], *, emulator: str | None = None
) -> T:
    """``open_client()``, once Google Cloud can be reached for ``service`` (a name for people,
    e.g. ``Firestore``): the emulator that the variable ``emulator`` names accepts connections
    when it is set, Application Default Credentials are found when it is not."""
    host = os.environ.get(emulator) if emulator else None
    if emulator and host:
        check_emulator(service, emulator, host)
    else:
        check_credentials(service, emulator)
    return open_client()


def check_emulator(service: str, variable: str, host: str) -> None:
    """Raise :class:`CloudAccessError` unless ``host`` (host:port) accepts a TCP connection
    within :data:`EMULATOR_CONNECT_SECONDS`."""
    name, _, port = host.rpartition(":")
    start = _START.get(variable, "").format(host)
    fix = (f"start it there ({start})" if start else "start it") + f", or unset {variable}"
    if not name or not port.isdigit():
        raise CloudAccessError(f"{variable}={host}: expected HOST:PORT of the {service} emulator")
    try:
        with socket.create_connection((name.strip("[]"), int(port)), EMULATOR_CONNECT_SECONDS):
            return
    except TimeoutError:
        why = f"timed out after {EMULATOR_CONNECT_SECONDS:.0f} s"
    except OSError as exc:
        why = (exc.strerror or type(exc).__name__).lower()
    raise CloudAccessError(
        f"the {service} emulator at {variable}={host} does not answer ({why}): {fix}"
    )


def check_credentials(service: str, emulator: str | None = None) -> None:
    """Raise :class:`CloudAccessError` unless Application Default Credentials are found (a key
    file, ``gcloud auth application-default login``, or the metadata server on Google Cloud)."""
    import google.auth
    import google.auth.exceptions

    try:
        with warnings.catch_warnings():  # the client's own look-up warns, once is enough
            warnings.simplefilter("ignore")
            google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise missing_credentials(service, exc, emulator) from None


def missing_credentials(
    service: str | None, cause: BaseException, emulator: str | None = None
) -> CloudAccessError:
    """The one line for credentials that google-auth did not find (``cause``) for ``service``
    (None: a client we did not open)."""
    key_file = os.environ.get(_KEY_FILE)
    detail = ""
    if key_file:  # google-auth reports only the file then: say which variable named it
        first = (str(cause).strip().splitlines() or [""])[0][:200]
        detail = f" ({_KEY_FILE}={key_file}: {first})"
    fixes = [
        "run `gcloud auth application-default login`",
        f"set {_KEY_FILE} to a service account key file",
    ]
    if emulator:
        fixes.append(f"set {emulator} to a running emulator's HOST:PORT")
    listed = ", ".join(fixes[:-1]) + f", or {fixes[-1]}"
    needed = f" for {service}" if service else ""
    return CloudAccessError(f"no Google Cloud credentials{needed}{detail}: {listed}")


def as_cloud_access_error(exc: BaseException) -> CloudAccessError | None:
    """``exc`` as a :class:`CloudAccessError` when it is one, or google-auth's
    ``DefaultCredentialsError`` from a client opened some other way; else None."""
    if isinstance(exc, CloudAccessError):
        return exc
    auth = sys.modules.get("google.auth.exceptions")  # not imported: it cannot be raised
    if auth is not None and isinstance(exc, auth.DefaultCredentialsError):
        return missing_credentials(None, exc)
    return None
