"""The docs cannot drift silently: every command, flag, env var, script and alert they quote
exists in the code, and the rendered diagrams match their Mermaid sources."""

import argparse
import hashlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from common.config import ENV_VARS
from jobs.cli import build_parser
from sim.server import build_parser as sim_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Variables the code reads that are not job configuration, and shell variables the docs set.
OTHER_ENV = {
    "SHEETS_ACCESS_TOKEN",
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "MERMAID_JS",
    "PROJECT_ID",
    "REGION",
    "DATE",
    "NEW_KEY",
    "FHIR_API_KEY",
    "EXECUTION",
}


def code_spans(text: str) -> list[str]:
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    without = re.sub(r"```.*?```", "", text, flags=re.S)
    return fenced + re.findall(r"`([^`\n]+)`", without)


def spans() -> list[tuple[str, str]]:
    return [(doc.name, span) for doc in DOCS for span in code_spans(doc.read_text())]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = dict(action.choices)
    found["fhir-sim"] = sim_parser()
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def phonesync_invocations() -> list[tuple[str, list[str]]]:
    calls = []
    for doc, span in spans():
        joined = span.replace("\\\n", " ")
        for line in joined.splitlines():
            for match in re.finditer(r"(?<![\w/.-])phonesync\s+([a-z][a-z-]+)(.*)", line):
                tail = match.group(2).split("|")[0].split("#")[0]
                try:
                    words = shlex.split(tail)
                except ValueError:
                    words = tail.split()
                calls.append((doc, [match.group(1), *words]))
    return calls


def test_every_phonesync_command_and_flag_quoted_exists() -> None:
    commands = subcommands()
    calls = phonesync_invocations()
    assert len(calls) > 10
    for doc, (command, *words) in calls:
        if (
            command in ("run", "transform", "status", "report", "replay", "fhir-sim")
            or command in commands
        ):
            assert command in commands, f"{doc}: phonesync {command} does not exist"
            known = options(commands[command])
            for word in words:
                flag = word.split("=")[0]
                if flag.startswith("--"):
                    assert flag in known, f"{doc}: phonesync {command} has no {flag}"


def test_every_env_var_quoted_is_read_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts)
    terraform = "\n".join(p.read_text() for p in (ROOT / "terraform").glob("*.tf"))
    for doc, span in spans():
        for name in re.findall(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", span):
            if name.startswith(("CLOUD_RUN_TASK_COUNT", "CKV_")) or name in OTHER_ENV:
                continue
            if name in ENV_VARS or f'"{name}"' in terraform:  # config, or a terraform value quoted
                continue
            # Anything else quoted as an env var must be read somewhere by name.
            assert f'"{name}"' in source or name in ("SHORT_SHA",), (
                f"{doc}: {name} is not read by the code"
            )


def test_scripts_and_modules_quoted_exist() -> None:
    for doc, span in spans():
        for script in re.findall(r"\./(scripts/[\w-]+)", span):
            assert (ROOT / script).exists(), f"{doc}: {script} missing"
        for module in re.findall(r"python -m ([\w.]+)", span):
            assert importlib.util.find_spec(module) is not None, f"{doc}: module {module} missing"


def test_the_runbook_has_a_section_for_every_alert_policy() -> None:
    alerts = re.findall(
        r'display_name\s*=\s*"(phonesync: [^"]+)"',
        (ROOT / "terraform" / "monitoring.tf").read_text(),
    )
    assert len(alerts) >= 9
    headings = re.findall(r"^## (phonesync: .+)$", (ROOT / "docs" / "runbook.md").read_text(), re.M)
    expected = [a.replace("${var.max_run_minutes}", "25") for a in alerts]
    assert sorted(headings) == sorted(expected)


@pytest.mark.parametrize("index,name", [(0, "components"), (1, "row-sequence")])
def test_rendered_diagrams_match_their_mermaid_source(index: int, name: str) -> None:
    sources = re.findall(r"```mermaid\n(.*?)```", (ROOT / "docs" / "design.md").read_text(), re.S)
    svg = (ROOT / "docs" / "diagrams" / f"{name}.svg").read_text()
    digest = hashlib.sha256(sources[index].encode()).hexdigest()
    assert f"source-sha256: {digest}" in svg, f"re-render with scripts/render-diagrams ({name})"
    assert 'aria-roledescription="error"' not in svg


def test_decisions_are_numbered_dated_records_with_status_and_what_would_change_them() -> None:
    text = (ROOT / "docs" / "decisions.md").read_text()
    records = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(records) >= 70
    numbers = []
    for record in records:
        head = record.splitlines()[0]
        match = re.fullmatch(r"(\d+)\. \S.*", head)
        assert match, f"decisions.md: a record's heading is `N. title`, not {head!r}"
        numbers.append(int(match.group(1)))
        status = re.search(
            r"^\*(Accepted(?: \(supersedes (\d+)\))?|Superseded by (\d+)) · (\d{4}-\d{2}-\d{2})\*$",
            record,
            re.M,
        )
        assert status, f"decisions.md, record {head}: no status and date line"
        for other in filter(None, status.group(2, 3)):
            assert f"\n### {other}. " in text, f"decisions.md, record {head}: no record {other}"
        label = "What changed it" if status.group(3) else "Would change it"
        assert f"*{label}:*" in record, f"decisions.md, record {head}: no '{label}:'"
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), (
        "record numbers: 1, 2, 3, … once each"
    )


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def relative_links() -> list[tuple[Path, str]]:
    found = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):
                found.append((doc, target))
    return found


def test_the_docs_link_to_pages_and_sections_that_exist() -> None:
    links = relative_links()
    assert len(links) > 20, "the docs link to each other: the pattern found too few links"
    broken = []
    for doc, target in links:
        path, _, anchor = target.partition("#")
        page = (doc.parent / path).resolve() if path else doc
        if not page.exists():
            broken.append(f"{doc.name}: {target} (no such file)")
        elif anchor and page.suffix == ".md" and anchor not in anchors(page):
            broken.append(f"{doc.name}: {target} (no heading #{anchor} in {page.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)
