"""Help that helps: every command says what it is for and shows an example that parses, `run -h`
names the environment a newcomer needs, and docs/cli.md is what the parsers print now."""

import argparse
import re
import shlex

import pytest

from jobs import cli_reference
from jobs.cli import build_parser
from sim.server import build_parser as sim_parser

COMMANDS = cli_reference.commands()


def test_docs_cli_md_is_what_the_parsers_render_now() -> None:
    assert cli_reference.PATH.read_text(encoding="utf-8") == cli_reference.render(), (
        "docs/cli.md differs from what the argument parsers print now: regenerate it with"
        f" `{cli_reference.COMMAND}` (and commit it)"
    )


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "phonesync"])
def test_every_command_has_a_description_and_an_example(name: str) -> None:
    parser = COMMANDS[name]
    assert parser.description and len(parser.description.split()) >= 15, name
    assert parser.epilog and "example" in parser.epilog, name
    assert f"\n  {name} " in parser.format_help(), f"{name}: its example does not run it"


def examples(help_text: str) -> list[list[str]]:
    """The `phonesync …` command lines of a help text (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", help_text)
    found = []
    for line in joined.splitlines():
        if line.startswith("  phonesync "):
            found.append(shlex.split(line.split(" & ")[0].rstrip(" &"))[1:])
    return found


@pytest.mark.parametrize("name", COMMANDS)
def test_every_example_in_the_help_parses(name: str) -> None:
    for words in examples(COMMANDS[name].format_help()):
        if "-h" in words:  # a pointer to a command's help, not an example
            continue
        parser, args = (
            (sim_parser(), words[1:]) if words[0] == "fhir-sim" else (build_parser(), words)
        )
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"{name} -h: `phonesync {shlex.join(words)}` does not parse ({exc.code})")


def test_run_help_names_the_environment_a_newcomer_needs() -> None:
    text = COMMANDS["phonesync run"].format_help()
    for name in (
        "FHIR_BASE_URL",
        "FHIR_AUTH",
        "FHIR_API_KEY",
        "FHIR_TOKEN_URL",
        "FHIR_CLIENT_ID",
        "FHIR_CLIENT_SECRET",
        "SHEETS_API_URL",
        "SHEETS_ACCESS_TOKEN",
        "STATE_BACKEND",
        "GOOGLE_CLOUD_PROJECT",
    ):
        assert re.search(rf"\b{name}\b", text), f"phonesync run -h does not mention {name}"


def test_the_command_list_fits_on_one_line_each() -> None:
    listing = COMMANDS["phonesync"].format_help()
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in action.choices:
        assert re.search(rf"^    {name} +\S", listing, re.M), f"`{name}` wraps in phonesync -h"
