"""Docs that run: every shell block of README.md and docs/*.md is executed as written, or marked
as needing Google Cloud (then each `phonesync` command in it must parse).

Markers — an HTML comment on the line before the block's opening fence (invisible on GitHub):

    <!-- docs: cloud -->             needs Google Cloud: not run; every `phonesync …` in it
                                     is parsed by the real argument parser instead
    <!-- docs: not-run REASON -->    neither (a synopsis, the test suite itself…): say why

An unmarked block runs on its own, as a reader pastes it into a fresh terminal: in a bash of its
own with `set -euo pipefail`, in a fresh temporary folder holding a copy of examples/ (never
the checkout), with `.venv/bin` first on PATH and no phonesync configuration inherited from the
environment. So a block must start what it needs (a simulator with `& sim=$!`, then wait until
it answers) and stop it (`kill $sim`): a process still running when the block ends fails it.
Each block's servers listen on ports no other block uses, so blocks pasted in any order never
meet another's leftover server; the one rewrite is that each of those ports becomes a free one
(other test runs share the machine). Then all the blocks run again one after another in one
folder, each in a shell of its own, as a reader pasting them in order leaves the folder (state,
out/) for the next: no block may depend on another, nor be broken by what another left.
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
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
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


LOCAL = [b for b in ALL if b.kind == "local"]
PORT = re.compile(r"(?:--port\s+|127\.0\.0\.1:)(\d{2,5})\b")
#: Appended to every block: whatever it started must be gone (given 5 s to shut down).
LEFT_RUNNING = """
for _ in $(seq 50); do [ -z "$(jobs -pr)" ] && exit 0; sleep 0.1; done
echo "::left running:: $(jobs -r)" >&2
exit 97
"""


def ports(block: Block) -> set[int]:
    return {int(p) for p in PORT.findall(block.text)}


def script(block: Block, free: dict[int, int]) -> str:
    """The block as one bash script, its ports replaced by free ones."""
    text = block.text
    for port in ports(block):
        text = re.sub(rf"\b{port}\b", str(free[port]), text)
    # The EXIT trap only stops what a failed block left behind; LEFT_RUNNING fails it first.
    return (
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + text + LEFT_RUNNING
    )


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    for name in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "SHEETS_ACCESS_TOKEN"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_block(
    block: Block, folder: Path, free: dict[int, int], context: str
) -> subprocess.CompletedProcess[str]:
    path = folder / f"block-{block.line}.sh"
    path.write_text(script(block, free))
    done = subprocess.run(
        ["bash", str(path)],
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    path.unlink()
    if done.returncode != 0:
        left = "::left running::" in done.stderr
        pytest.fail(
            f"{block.where} {'left a process running' if left else 'failed'} (exit"
            f" {done.returncode}) when run {context}.\n--- block ---\n{block.text}--- stderr (end) ---\n{done.stderr[-3000:]}\n"
            f"--- stdout (end) ---\n{done.stdout[-1500:]}\n"
            "A block starts what it needs and stops it (`& sim=$!` … `kill $sim`). If it needs"
            " Google Cloud, put <!-- docs: cloud --> on the line before its fence; if it cannot"
            " run for another reason, <!-- docs: not-run REASON -->."
        )
    return done


def fresh_folder(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def test_every_local_block_has_ports_of_its_own() -> None:
    assert len(LOCAL) >= 4
    owner: dict[int, str] = {}
    for block in LOCAL:
        started = {int(p) for p in re.findall(r"--port\s+(\d+)", block.text)}
        assert ports(block) == started, (
            f"{block.where} talks to a server it does not start (ports {sorted(ports(block))},"
            f" started {sorted(started)}): a block must run on its own"
        )
        for port in started:
            assert port not in owner, f"{block.where} and {owner[port]} both use port {port}"
            owner[port] = block.where


@pytest.mark.slow  # a simulator and a run each: ~20 s in all, not in test-fast
@pytest.mark.parametrize("block", LOCAL, ids=lambda b: f"{b.doc}:{b.line}")
def test_each_local_block_runs_on_its_own(block: Block, tmp_path: Path) -> None:
    free = {p: free_port() for p in ports(block)}
    done = run_block(block, fresh_folder(tmp_path), free, "on its own in a fresh shell and folder")
    if "--oauth-client" in block.text:  # the run got its token from this simulator
        assert re.search(r'"POST token 200":[1-9]', done.stdout), (
            f"{block.where} must show that its run was granted a token by the simulator it"
            ' started (its /_sim/stats: "POST token 200":N)'
        )
    if "--write patch-only" in block.text:  # the run patched: the registry takes no PUT
        assert re.search(r'"PATCH 200":10\b', done.stdout), (
            f"{block.where} must show that its run patched each of the sample's 10 patients"
            ' (its /_sim/stats: "PATCH 200":10)'
        )
        assert "succeeded in" in done.stderr and "{'updated': 10}" in done.stderr, done.stderr[
            -2000:
        ]


@pytest.mark.slow  # ~15 s, not in scripts/test-fast
def test_the_local_blocks_run_one_after_another_in_one_folder(tmp_path: Path) -> None:
    folder = fresh_folder(tmp_path)
    free = {p: free_port() for block in LOCAL for p in ports(block)}
    for index, block in enumerate(LOCAL):
        before = ", ".join(f"{b.doc}:{b.line}" for b in LOCAL[:index]) or "none"
        run_block(
            block,
            folder,
            free,
            f"in a fresh shell in the folder the blocks before it left ({before})",
        )
