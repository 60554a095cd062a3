"""Cloud Build's substitution rules (cloud.google.com/build/docs/configuring-builds/
substitute-variable-values), which the Build schema cannot express.

- A user-defined substitution's name matches ``_[A-Z0-9_]+``.
- Every ``$NAME`` / ``${NAME}`` in the fields Cloud Build substitutes is a built-in or a
  substitution the file defines: with the default ``MUST_MATCH`` an unknown one fails the build.
- Any other ``$`` is written ``$$`` (a shell's ``${var}``, ``$(cmd)``, ``$1``): a lone ``$``
  would be read as a substitution or rejected.
- Every defined substitution is used (MUST_MATCH rejects one that matches nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

BUILT_IN = frozenset(
    {
        "PROJECT_ID",
        "BUILD_ID",
        "PROJECT_NUMBER",
        "LOCATION",
        "TRIGGER_NAME",
        "COMMIT_SHA",
        "REVISION_ID",
        "SHORT_SHA",
        "REPO_NAME",
        "REPO_FULL_NAME",
        "BRANCH_NAME",
        "TAG_NAME",
        "REF_NAME",
        "TRIGGER_BUILD_CONFIG_PATH",
        "SERVICE_ACCOUNT_EMAIL",
        "SERVICE_ACCOUNT",
        "_HEAD_BRANCH",
        "_BASE_BRANCH",
        "_HEAD_REPO_URL",
        "_PR_NUMBER",
    }
)
USER_NAME = re.compile(r"_[A-Z0-9_]+")
# $$ (an escaped $), ${NAME}, $NAME, or a $ followed by anything else.
_DOLLAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$")
# The Build fields whose strings Cloud Build substitutes.
_SUBSTITUTED = ("steps", "images", "artifacts", "tags", "options", "logsBucket", "serviceAccount")


def problems(build: dict[str, Any]) -> list[str]:
    defined: dict[str, Any] = build.get("substitutions") or {}
    found = [
        f"substitutions.{name}: a user substitution is named _[A-Z0-9_]+"
        for name in defined
        if not USER_NAME.fullmatch(name)
    ]
    used: set[str] = set()
    for where, text in _strings({k: build[k] for k in _SUBSTITUTED if k in build}, ""):
        for match in _DOLLAR.finditer(text):
            if match.group(0) == "$$":
                continue
            name = match.group(1) or match.group(2)
            if name is None:
                context = text[match.start() : match.start() + 12]
                found.append(f"{where}: a literal $ must be written $$ ({context!r})")
            elif name not in BUILT_IN and name not in defined:
                found.append(
                    f"{where}: ${name} is neither built in nor in substitutions"
                    f" (a shell variable is written $${{{name}}})"
                )
            else:
                used.add(name)
    found += [f"substitutions.{name}: never used" for name in defined if name not in used]
    return found


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if where.endswith("options") and key == "substitutionOption":
                continue
            yield from _strings(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
