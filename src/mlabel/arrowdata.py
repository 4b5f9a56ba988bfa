"""Hugging Face `datasets` on disk: a `save_to_disk` folder's Arrow files (and a lone `.arrow` or
`.feather` file) as one memory-mapped table, and the class names that `datasets` records in a
file's schema, so that a column of `ClassLabel` numbers reads as the names they stand for."""

from __future__ import annotations

import json
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mlabel.errors import DataError, clean

ARROW_SUFFIXES = (".arrow", ".feather")
STATE = "state.json"  # a `save_to_disk` folder's list of its Arrow files
SPLITS = "dataset_dict.json"  # a `DatasetDict.save_to_disk` folder: one subfolder per split
SCHEMA_KEY = b"huggingface"  # the schema metadata where `datasets` records its features


def is_dataset_folder(path: Path) -> bool:
    """Whether `path` is a folder that `datasets`' `save_to_disk` wrote (one dataset or splits)."""
    return path.is_dir() and ((path / STATE).is_file() or (path / SPLITS).is_file())


def arrow_files(path: Path) -> list[Path]:
    """The Arrow files of a `save_to_disk` folder, in its order, or [path] for a `.arrow` or
    `.feather` file; [] for anything else. A folder of splits says which to choose."""
    if path.suffix.lower() in ARROW_SUFFIXES and path.is_file():
        return [path]
    if not is_dataset_folder(path):
        return []
    if not (path / STATE).is_file():
        splits = ", ".join(str(path / s) for s in _read_json(path / SPLITS).get("splits", []))
        raise DataError(f"{path.name}: a dataset of splits; pass one split's folder: {splits}")
    files = _read_json(path / STATE).get("_data_files", [])
    return [path / entry["filename"] for entry in files]


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path.parent.name}/{path.name}: cannot read ({clean(err)})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path.parent.name}/{path.name}: expected a JSON object")
    return value


def arrow_table(path: Path) -> pa.Table:
    """An Arrow file, memory-mapped: the IPC file form (Feather v2) or the stream form that
    `datasets` writes."""
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).read_all()


def class_names(schema: pa.Schema) -> dict[str, list[str]]:
    """Column -> class names, from the features `datasets` records in a schema's metadata (see
    `feature_class_names`)."""
    try:
        features = json.loads((schema.metadata or {})[SCHEMA_KEY])["info"]["features"]
    except (KeyError, TypeError, ValueError):
        return {}
    return feature_class_names(features)


def table_class_names(table: object) -> dict[str, list[str]]:
    """The class names of an in-memory table: a `datasets.Dataset`'s features, or a pyarrow
    Table's schema; {} for anything else."""
    features = getattr(table, "features", None)
    if callable(getattr(features, "to_dict", None)):
        return feature_class_names(features.to_dict())
    schema = getattr(table, "schema", None)
    return class_names(schema) if isinstance(schema, pa.Schema) else {}


def feature_class_names(features: object) -> dict[str, list[str]]:
    """Column -> class names, for the columns `datasets`' features (as a dict) describe as lists
    of `ClassLabel` (multi-label) or as one `ClassLabel` of more than two classes (a column of
    two classes stays 0/1: one label)."""
    names = {}
    for column, feature in features.items() if isinstance(features, dict) else ():
        inner = feature.get("feature") if isinstance(feature, dict) else None
        if _is_class_label(inner):
            names[column] = inner["names"]
        elif _is_class_label(feature) and len(feature["names"]) > 2:
            names[column] = feature["names"]
    return names


def _is_class_label(feature: object) -> bool:
    return (
        isinstance(feature, dict)
        and feature.get("_type") == "ClassLabel"
        and isinstance(feature.get("names"), list)
    )


def with_class_names(chunk: pd.DataFrame, names: dict[str, list[str]]) -> pd.DataFrame:
    """`chunk` with its class-number columns as names (a number outside the names stays)."""
    for column, classes in names.items():
        if column in chunk.columns:
            chunk[column] = chunk[column].map(lambda cell, c=classes: _named(cell, c))
    return chunk


def _named(cell: object, classes: list[str]) -> object:
    if isinstance(cell, list | tuple | np.ndarray):
        return [_named(value, classes) for value in cell]
    if isinstance(cell, Integral) and 0 <= cell < len(classes):
        return classes[int(cell)]
    return cell
