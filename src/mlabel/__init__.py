"""mlabel: multi-label text classification with transformer encoders.

Names are imported on first use, so `mlabel --help` does not pay for torch and transformers.
"""

from importlib import import_module

_EXPORTS = {
    "Classifier": "mlabel.classifier",
    "TrainConfig": "mlabel.config",
    "DataError": "mlabel.errors",
    "load_examples": "mlabel.data",
    "read_table": "mlabel.tables",
    "load_table": "mlabel.tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlabel' has no attribute {name!r}")
    attr = "read_table" if name == "load_table" else name
    return getattr(import_module(_EXPORTS[name]), attr)
