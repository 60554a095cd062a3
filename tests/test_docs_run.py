"""Docs that run: every shell block of README.md, docs/runbook.md and docs/deploy.md is executed
as written, or marked as needing Google Cloud (then each `phonesync` command in it must parse).

Markers — an HTML comment on the line before the block's opening fence (invisible on GitHub):

    <!-- docs: cloud -->             needs Google Cloud: not run; every `phonesync …` in it
                                     is parsed by the real argument parser instead
    <!-- docs: not-run REASON -->    neither (a synopsis, the test suite itself…): say why

An unmarked block runs locally, in document order, in one bash session per document (so an
`export` or a simulator started with `&` in one block serves the next), with `set -euo
pipefail`, in a fresh temporary folder holding a copy of examples/ (never the checkout), with
`.venv/bin` first on PATH and no phonesync configuration inherited from the environment. The one
rewrite: port 8080 becomes a free port (tests run in parallel), and after a line ending in `&`
the session waits until that port answers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.config import ENV_VARS
from jobs.cli import build_parser
from sim.server import build_parser as sim_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "runbook.md", ROOT / "docs" / "deploy.md"]
MARKER = re.compile(r"<!--\s*docs:\s*(cloud|not-run)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(sh|bash|shell|console)\s*$")
# Shell variables the docs set for the cloud commands; their values only need to parse.
CLOUD_VALUES = {"DATE": "2025-09-23", "PROJECT_ID": "my-project", "REGION": "asia-southeast2"}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    kind: str  # "local", "cloud" or "not-run"
    reason: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc}, the shell block at line {self.line}"


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if not FENCE.match(lines[i]):
            i += 1
            continue
        start = i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(previous)
        kind, reason = (marker.group(1), marker.group(2)) if marker else ("local", "")
        body = "\n".join(lines[start + 1 : end]) + "\n"
        found.append(Block(path.relative_to(ROOT).as_posix(), start + 1, kind, reason, body))
        i = end + 1
    return found


ALL = [b for doc in DOCS for b in blocks(doc)]


def test_every_marker_is_known_and_every_not_run_says_why() -> None:
    assert ALL, "no shell blocks found"
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if "<!-- docs:" in line:
                assert MARKER.search(line), (
                    f"{doc.name}:{number}: unknown marker {line.strip()!r};"
                    " use <!-- docs: cloud --> or <!-- docs: not-run REASON -->"
                )
    for block in ALL:
        if block.kind == "not-run":
            assert len(block.reason.split()) >= 3, f"{block.where}: say why it is not run"


def phonesync_commands(text: str) -> list[list[str]]:
    """Each `phonesync …` command of a block, as argument lists ($VARS given sample values)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\$\{?(\w+)\}?", lambda m: CLOUD_VALUES.get(m.group(1), "X"), line)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set("|&;()<>"):  # an operator ends a command
                if words[:1] == ["phonesync"]:
                    commands.append(words[1:])
                words = []
            else:
                words.append(token)
    return commands


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.kind == "cloud"], ids=lambda b: f"{b.doc}:{b.line}"
)
def test_cloud_blocks_name_only_commands_and_flags_that_exist(block: Block) -> None:
    for words in phonesync_commands(block.text):
        parser = sim_parser() if words[:1] == ["fhir-sim"] else build_parser()
        args = words[1:] if words[:1] == ["fhir-sim"] else words
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            pytest.fail(
                f"{block.where}: `phonesync {shlex.join(words)}` does not parse (exit {exc.code});"
                " see the error above"
            )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session(local: list[Block], port: int) -> str:
    """One bash script running the blocks in order, announcing each on stderr."""
    wait = (
        f"for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break;"
        " sleep 0.05; done"
    )
    parts = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for index, block in enumerate(local):
        parts.append(f"echo '::block {index}::' >&2")
        for line in block.text.replace("8080", str(port)).splitlines():
            parts.append(line)
            if line.rstrip().endswith("&") and not line.rstrip().endswith("&&"):
                parts.append(wait)
    return "\n".join(parts) + "\n"


@pytest.mark.parametrize(
    "doc",
    [
        d
        for d in DOCS
        if any(b.doc == d.relative_to(ROOT).as_posix() and b.kind == "local" for b in ALL)
    ],
    ids=lambda d: d.name,
)
def test_local_blocks_run_as_written(doc: Path, tmp_path: Path) -> None:
    local = [b for b in blocks(doc) if b.kind == "local"]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    for name in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "SHEETS_ACCESS_TOKEN"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    script = tmp_path / "session.sh"
    script.write_text(session(local, free_port()))
    done = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    if done.returncode != 0:
        announced = re.findall(r"::block (\d+)::", done.stderr)
        failed = local[int(announced[-1])] if announced else local[0]
        pytest.fail(
            f"{failed.where} failed (exit {done.returncode}) when run as written in a temporary"
            f" folder against the simulator.\n--- block ---\n{failed.text}--- stderr (end) ---\n"
            f"{done.stderr[-3000:]}\n--- stdout (end) ---\n{done.stdout[-1500:]}\n"
            "If it needs Google Cloud, put <!-- docs: cloud --> on the line before its fence;"
            " if it cannot run for another reason, <!-- docs: not-run REASON -->."
        )
    assert done.stderr.count("::block") == len(local)
