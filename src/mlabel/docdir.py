"""Annif's full-text document corpus: a folder of UTF-8 `.txt` documents, each with its subjects
in a `.tsv` (preferred) or `.key` file of the same name, one subject per line: `<uri>`, `<uri>`
a tab and its label, or a label alone. Read as a table of `ID` (the file name without `.txt`),
`text` and `subject_uris`: the URIs where a document's file gives them, else its labels (as
Annif reads them); missing where a document has no subject file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from mlabel.errors import DataError
from mlabel.tablefile import ANNIF_COLUMNS, MAX_LINE_BYTES

ID_COLUMN = "ID"
SUBJECT_FILES = (".tsv", ".key")  # Annif takes the first that exists
SHOW_NAMES = 5  # documents a warning names before "..."


def documents(folder: Path) -> list[Path]:
    """The folder's `.txt` documents, sorted by name (Annif's order); an error when none."""
    found = sorted(p for p in folder.glob("*.txt") if p.is_file())
    if not found:
        raise DataError(
            f"{folder.name}: a folder, but no .txt documents in it (a document corpus is a "
            "folder of .txt files, each with a .tsv or .key file of its subjects)"
        )
    return found


def iter_documents(folder: Path, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """The corpus in chunks of at most `chunk_rows` documents (None: one chunk), indexed by
    position like iter_table's chunks."""
    files = documents(folder)
    size = chunk_rows or len(files)
    for start in range(0, len(files), size):
        part = files[start : start + size]
        text, subjects = ANNIF_COLUMNS
        yield pd.DataFrame(
            {
                ID_COLUMN: [f.stem for f in part],
                text: [_read_text(f, folder) for f in part],
                subjects: [_subjects(f) for f in part],
            },
            index=pd.RangeIndex(start, start + len(part)),
        )


def with_subjects(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """The documents that have a subject file, for training and evaluation: those without
    one are left out, as Annif leaves them out, with a warning naming them."""
    has = df[ANNIF_COLUMNS[1]].map(lambda cell: cell is not None)
    if not has.any():
        raise DataError(f"{source}: no document has a .tsv or .key file of subjects")
    if not has.all():
        missing = df.loc[~has, ID_COLUMN].tolist()
        shown = ", ".join(missing[:SHOW_NAMES]) + (", ..." if len(missing) > SHOW_NAMES else "")
        warnings.warn(
            f"{source}: {len(missing)} document(s) without a .tsv or .key file of subjects "
            f"left out ({shown})",
            stacklevel=2,
        )
    return df[has.to_numpy()].reset_index(drop=True)


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
    """Whether `data` names a folder (read as a document corpus), not a table or DataFrame."""
    return isinstance(data, str | Path) and Path(data).is_dir()
