"""Where a command's output goes: a file that appears whole or not at all, or standard output
(``-``, as most Unix tools read it) — and never onto one of the command's own inputs."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import orjson

from common.errors import InputError

T = TypeVar("T")

#: What ``--out -`` / ``--report -`` say: standard output, not a file named ``-``.
STDOUT_NAME = "-"


def destination(path: Path | None) -> Path | None:
    """``path``, or None when it means standard output (absent, or ``-``)."""
    return None if path is None or str(path) == STDOUT_NAME else path


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same inode (a hard link, a symlink, another
    spelling of the path), or — when one does not exist yet — the same path once resolved."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist (yet)
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting(
    outputs: Mapping[str, Path | None],
    inputs: Mapping[str, Path],
    allowed: Collection[tuple[str, str]] = (),
) -> None:
    """:class:`InputError` if an output (flag → file, None for standard output) would replace an
    input (flag → file) or another output; ``allowed`` lists (output flag, input flag) pairs that
    may be the same file (e.g. a bundle transformed in place: it is read before it is replaced).
    Called before anything is read or written, so a refused command changes nothing."""
    for out_flag, out_path in outputs.items():
        for in_flag, in_path in inputs.items():
            if out_path is None or (out_flag, in_flag) in allowed:
                continue
            if same_file(out_path, in_path):
                raise InputError(
                    f"{out_flag} {out_path} is the file {in_flag} reads ({in_path}):"
                    " writing it would destroy that input; choose another file"
                )
    for (a_flag, a_path), (b_flag, b_path) in combinations(outputs.items(), 2):
        if a_path is None and b_path is None:
            raise InputError(
                f"{a_flag} and {b_flag} would both go to standard output ({a_flag} does when"
                f" absent or -): write one of them to a file"
            )
        if a_path is not None and b_path is not None and same_file(a_path, b_path):
            raise InputError(
                f"{a_flag} and {b_flag} are the same file ({a_path}): one would replace the"
                " other; give each its own file"
            )


def write_output(path: Path | None, write: Callable[[BinaryIO], T]) -> T:
    """What ``write`` returns after it wrote to ``path``, or to standard output when that is
    None or ``-``.

    A file appears whole or not at all: it is written beside ``path`` and renamed over it, so a
    failed run leaves no half-written bundle (nor an empty one) behind.
    """
    path = destination(path)
    if path is None:
        value = write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return value
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with partial.open("wb") as handle:
                value = write(handle)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from None
    return value


def render_table(records: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str) -> bytes:
    """``report`` and ``drift`` output: CSV with a header row (``fmt`` ``csv``) or an indented
    JSON array of the same records (``json``)."""
    if fmt == "json":
        return orjson.dumps(list(records), option=orjson.OPT_INDENT_2) + b"\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue().encode()
