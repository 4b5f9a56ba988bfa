"""Errors a person can fix. The CLI prints them as one line and exits 2; this module stays light
so that importing the CLI does not pull in torch."""


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
