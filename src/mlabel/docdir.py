"""Annif's full-text document corpus: a folder of UTF-8 `.txt` documents, each with its subjects
in a `.tsv` (preferred) or `.key` file of the same name, one subject per line: `<uri>`, `<uri>`
a tab and its label, or a label alone; and, since Annif 1.4, `.json` documents holding their
`text`, `subjects` (`[{"uri": ...} or {"label": ...}]`) and `metadata` (its fields become
columns). Read as a table of `ID` (the file name without its suffix), `text` and `subject_uris`:
the URIs where given, else the labels (as Annif reads them); missing where a document has no
subject file, or a JSON document no subjects."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlabel.arrowdata import is_dataset_folder
from mlabel.errors import DataError
from mlabel.tablefile import ANNIF_COLUMNS, MAX_LINE_BYTES, parquet_parts

ID_COLUMN = "ID"
SUBJECT_FILES = (".tsv", ".key")  # Annif takes the first that exists
METADATA = "metadata"  # Annif's JSON documents: a mapping of fields (title, ...) besides the text
JSON_SUBJECTS = "subjects"  # and their subjects, [{"uri": ...} or {"label": ...}]
SHOW_NAMES = 5  # documents a warning names before "..."


def documents(folder: Path) -> list[Path]:
    """The folder's `.txt` documents, then its `.json` ones, each sorted by name (Annif's
    order); an error when there are none."""
    found = [p for kind in ("*.txt", "*.json") for p in sorted(folder.glob(kind)) if p.is_file()]
    if not found:
        raise DataError(
            f"{folder.name}: a folder, but no .txt or .json documents in it (a document corpus "
            "is a folder of .txt files, each with a .tsv or .key file of its subjects, or of "
            "Annif's .json documents), nor .parquet parts of a table"
        )
    return found


def iter_documents(folder: Path, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """The corpus in chunks of at most `chunk_rows` documents (None: one chunk), indexed by
    position like iter_table's chunks."""
    files = documents(folder)
    size = chunk_rows or len(files)
    for start in range(0, len(files), size):
        rows = [_document(f, folder) for f in files[start : start + size]]
        yield pd.DataFrame(rows, index=pd.RangeIndex(start, start + len(rows)))


def _document(file: Path, folder: Path) -> dict[str, Any]:
    """One document as a row: id, text, subjects (and a JSON document's metadata fields)."""
    text, subjects = ANNIF_COLUMNS
    if file.suffix == ".txt":
        return {ID_COLUMN: file.stem, text: _read_text(file, folder), subjects: _subjects(file)}
    where = f"{folder.name}/{file.name}"
    try:
        doc = json.loads(_read_text(file, folder))
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not JSON ({err})") from None
    fields = doc.get(METADATA) if isinstance(doc, dict) else None
    names = [subject_name(s) for s in doc.get(JSON_SUBJECTS) or []] if isinstance(doc, dict) else []
    if not isinstance(doc, dict) or not isinstance(fields or {}, dict) or None in names:
        raise DataError(
            f"{where}: expected Annif's JSON document, an object with text, subjects "
            '([{"uri": ...} or {"label": ...}]) and metadata (an object)'
        )
    row = {ID_COLUMN: file.stem, text: doc.get(text), subjects: names or None}
    return row | {key: value for key, value in (fields or {}).items() if key not in row}


def subject_name(subject: object) -> str | None:
    """A subject of Annif's JSON forms, `{"uri": ...}` or `{"label": ...}`: the URI where it is
    given, else the label; None for anything else."""
    if not isinstance(subject, dict):
        return None
    name = subject.get("uri") or subject.get("label")
    return name if isinstance(name, str) else None


def with_subjects(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """The documents that have subjects (a subject file, or a JSON document's own), for
    training and evaluation: the others are left out, as Annif leaves them out, with a warning
    naming them."""
    has = ~lacks_subjects(df)
    if not has.any():
        raise DataError(f"{source}: no document has subjects (a .tsv or .key file of them)")
    if not has.all():
        missing = df.loc[~has, ID_COLUMN].tolist()
        shown = ", ".join(missing[:SHOW_NAMES]) + (", ..." if len(missing) > SHOW_NAMES else "")
        warnings.warn(
            f"{source}: {len(missing)} document(s) without subjects (no .tsv or .key file, "
            f"or a .json with none) left out ({shown})",
            stacklevel=2,
        )
    return df[has.to_numpy()].reset_index(drop=True)


def lacks_subjects(df: pd.DataFrame) -> pd.Series:
    """Which documents of a folder have no subjects (no subject file, or a .json with none)."""
    return df[ANNIF_COLUMNS[1]].map(lambda cell: cell is None).astype(bool)


def _read_text(file: Path, folder: Path) -> str:
    if file.stat().st_size > MAX_LINE_BYTES:
        raise DataError(
            f"{folder.name}/{file.name}: over {MAX_LINE_BYTES / 2**20:g} MiB; refusing to read it"
        )
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{folder.name}/{file.name}: not UTF-8 text (line {line})") from None


def _subjects(document: Path) -> list[str] | None:
    """A document's subjects (URIs if its file gives any, else labels); None without a file."""
    for suffix in SUBJECT_FILES:
        file = document.with_suffix(suffix)
        if file.is_file():
            return _parse_subjects(_read_text(file, document.parent))
    return None


def _parse_subjects(content: str) -> list[str]:
    """Annif's SubjectSet: per line, the `<uri>` values up to the first label; the URIs when
    there are at least as many as labels, else the labels."""
    uris, labels = [], []
    for line in content.splitlines():
        for value in (v.strip() for v in line.split("\t")):
            if value.startswith("<") and value.endswith(">"):
                uris.append(value[1:-1])
            elif value:
                labels.append(value)
                break
    return list(dict.fromkeys(uris if len(uris) >= len(labels) else labels))


def is_document_folder(data: object) -> bool:
    """Whether `data` names a folder read as a document corpus: not a table, a DataFrame, a
    folder of Parquet parts or a `datasets` folder."""
    if not (isinstance(data, str | Path) and Path(data).is_dir()):
        return False
    return not (parquet_parts(Path(data)) or is_dataset_folder(Path(data)))


def holds_subjects(cells: pd.Series) -> bool:
    """Whether a column holds subjects in Annif's JSON form (lists of mappings)."""
    return bool(
        cells.map(
            lambda c: (
                isinstance(c, list | tuple | np.ndarray) and any(isinstance(s, dict) for s in c)
            )
        ).any()
    )


def flatten_metadata(chunk: pd.DataFrame) -> pd.DataFrame:
    """A table's `metadata` column of mappings (Annif's JSON Lines corpus) as columns of their
    own (title, ...), beside the others; a chunk without such a column is returned as it is."""
    if METADATA not in chunk.columns:
        return chunk
    mappings = chunk[METADATA].map(lambda cell: cell if isinstance(cell, dict) else None)
    if mappings.isna().all() or (mappings.isna() & chunk[METADATA].notna()).any():
        return chunk  # no mappings, or values of other kinds: a column like any other
    fields = pd.DataFrame([cell or {} for cell in mappings], index=chunk.index)
    new = [c for c in fields.columns if c not in chunk.columns]
    return pd.concat([chunk.drop(columns=METADATA), fields[new]], axis=1)
