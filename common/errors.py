"""The library's exceptions. ``InputError`` means the run cannot proceed on what it was given."""

from collections.abc import Sequence


class PhonesyncError(Exception):
    """Base of every error phonesync raises on purpose."""


class InputError(PhonesyncError):
    """Unusable input (missing file or column, malformed JSON, bad option): stop with exit 2."""


class ConfigError(InputError):
    """One or more configuration problems, each one line naming the setting (``problems``)."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))
