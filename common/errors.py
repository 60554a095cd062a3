"""The library's exceptions. ``InputError`` means the run cannot proceed on what it was given."""


class PhonesyncError(Exception):
    """Base of every error phonesync raises on purpose."""


class InputError(PhonesyncError):
    """Unusable input (missing file or column, malformed JSON, bad option): stop with exit 2."""


class ConfigError(InputError):
    """One or more configuration problems, all listed in the message."""
