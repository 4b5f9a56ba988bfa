"""Errors a person can fix. The CLI prints them as one line and exits 2; this module stays light
so that importing the CLI does not pull in torch. `clean` and `quoted` keep what a message
quotes from the user's data on one short line."""

SHOW_CHARS = 60  # how much of a value or name an error message shows


class MlabelError(ValueError):
    """Bad input: says what is wrong and where."""


class DataError(MlabelError):
    """A table cannot be read or fails validation (names file, row, column and value)."""


class ConfigError(MlabelError):
    """A setting is unknown or out of range."""


class ModelError(MlabelError):
    """A model folder or encoder name cannot be used."""


class CheckpointError(MlabelError):
    """A checkpoint is missing, incomplete or unsafe."""


class UsageError(MlabelError):
    """Command-line arguments that do not fit together."""


class ExtraMissing(MlabelError):
    """An optional extra (`pip install 'mlabel[EXTRA]'`) that a task needs is not installed."""


def clean(text: object, limit: int = SHOW_CHARS) -> str:
    """`text` cut to `limit` characters, with line breaks and other control characters
    escaped, so that a message quoting it stays one short line."""
    text = str(text)
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)


def quoted(name: object) -> str:
    """A column or label name quoted for a message: 'name'."""
    return f"'{clean(name)}'"
