"""The optional extras of pyproject.toml, and one check that names the extra to install.

Light on purpose (stdlib only): the CLI checks an extra before importing anything heavy.
"""

from __future__ import annotations

import importlib
import importlib.util

from mlabel.errors import ExtraMissing

# extra -> {module to import: package pip installs}, as declared in pyproject.toml.
EXTRAS: dict[str, dict[str, str]] = {
    "onnx": {"onnx": "onnx", "onnxruntime": "onnxruntime"},
    "openvino": {"openvino": "openvino"},
    "serve": {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart"},
    "tune": {"optuna": "optuna"},
    "track": {"mlflow": "mlflow", "tensorboard": "tensorboard"},
    "ray": {"ray": "ray", "ray.data": "ray[data]"},
    "explain": {"captum": "captum"},
}


def missing(extra: str, packages: tuple[str, ...] | None = None) -> str | None:
    """The first of the extra's packages (or of `packages`, its module names) not installed."""
    modules = EXTRAS[extra]
    for module in packages or tuple(modules):
        if not _importable(module):
            return modules.get(module, module)
    return None


def require(extra: str, task: str, packages: tuple[str, ...] | None = None) -> None:
    """Raise ExtraMissing, in one line, when `task` cannot run for want of the extra."""
    package = missing(extra, packages)
    if package is not None:
        raise ExtraMissing(f"{task} needs the {package} package: pip install 'mlabel[{extra}]'")


def _importable(module: str) -> bool:
    # A submodule is imported: finding it imports its parent anyway, and it may need more
    # (ray.data needs pyarrow). A top-level module is only looked up, which is fast.
    if "." not in module:
        return importlib.util.find_spec(module) is not None
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
