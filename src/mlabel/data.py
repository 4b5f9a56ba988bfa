"""Resolve a table's text and label columns and validate them into Examples (reading the
file: mlabel.tables; label lists: mlabel.labellists; splits: mlabel.split).

Row numbers in error messages are 1-based data rows, counted the way a person counts them in
the file: the first row after the header is row 1 (for a DataFrame, row 1 is its first row).
A quoted CSV field that spans several lines still counts as one row.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mlabel.arrowdata import table_class_names, with_class_names
from mlabel.cells import (
    SHOW_ROWS,
    label_numbers,
    name_list,
    require_columns,
    row_numbers,
    show_value,
)
from mlabel.docdir import is_document_folder, with_subjects
from mlabel.errors import DataError, clean, quoted
from mlabel.labellists import labels_from_list_column, list_column
from mlabel.tables import read_table

UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name for a column without a header
SHOW_NAMES = 20  # how many label names a warning lists before "and N more"
# Share of texts that must gather several labels for an id-less table of one label per row to be
# read as one row per text and label (a class table's few conflicting repeats stay rows)
LONG_SHARE = 0.05
DEFAULT_COLUMNS_HINT = (
    "; columns other than id and text are read as 0/1 labels: name a list column with "
    "--labels-col or choose columns with --label-cols"
)


@dataclass
class Examples:
    """Texts with their ids and (for training/evaluation) a 0/1 label matrix."""

    ids: list[str]
    texts: list[str]
    labels: list[str]
    y: np.ndarray | None  # (n, len(labels)) bool, or None when labels were not read
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Examples:
        """A new Examples holding the rows at positions `idx`, in that order."""
        idx = np.asarray(idx, dtype=int).reshape(-1)
        return Examples(
            ids=[self.ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            labels=list(self.labels),
            y=None if self.y is None else self.y[idx],
            source=self.source,
        )


# ---------------------------------------------------------------- columns and validation


def text_cells(df: pd.DataFrame, col: str) -> pd.Series:
    """A text column as stripped strings, with "" for missing cells; a cell that holds a list
    of texts (paragraphs, as EUR-Lex's `main_body`) is its items joined with "\n"."""
    cells = df[col].map(_list_text) if _may_hold_lists(df[col].dtype) else df[col]
    return cells.astype("str").where(cells.notna(), "").str.strip()


def _may_hold_lists(dtype: object) -> bool:
    """Python objects, or an Arrow list column (as Ray's batches of JSON Lines hold them)."""
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_list(dtype.pyarrow_dtype) or pa.types.is_large_list(dtype.pyarrow_dtype)
    return pd.api.types.is_object_dtype(dtype)


def _list_text(cell: object) -> object:
    if not isinstance(cell, list | tuple | np.ndarray):
        return cell
    return join_text_parts(_list_text(p).strip() for p in cell if isinstance(p, str | list))


def join_text_parts(parts: Iterable[str]) -> str:
    """One text from a row's (stripped) text fields: the non-empty ones, joined with "\\n".

    Training, prediction and the server all build their input this way.
    """
    return "\n".join(p for p in parts if p)


def join_texts(
    df: pd.DataFrame, text_cols: Sequence[str], source: str, empty_ok: bool = False
) -> list[str]:
    """Join the text columns of each row with "\\n", in order; a row with no text is an error
    unless `empty_ok` (its text is then "").

    Empty or missing cells are skipped inside a row; a row whose text columns are all empty
    raises DataError naming how many rows and which (a chunk from `iter_table`, whose index
    starts at its first row's position, is counted from the start of the file).
    """
    if not text_cols:
        raise DataError(f"{source}: no text columns given")
    require_columns(df, text_cols, source, "--text-cols")
    parts = [text_cells(df, c) for c in text_cols]
    texts = [join_text_parts(row) for row in zip(*(p.tolist() for p in parts))]
    if empty_ok:
        return texts
    first = df.index.start if isinstance(df.index, pd.RangeIndex) and df.index.step == 1 else 0
    empty = [first + i for i, t in enumerate(texts) if not t]
    if empty:
        cols = name_list(text_cols)
        raise DataError(
            f"{source}: {len(empty)} row(s) with empty or missing text in {cols}: "
            f"row {row_numbers(empty)}"
        )
    return texts


def id_spellings(id_col: str) -> list[str]:
    """`id_col` and the ways a table may capitalise it ("ID", "id", "Id"): read as strings."""
    return list(dict.fromkeys([id_col, id_col.lower(), id_col.upper(), id_col.capitalize()]))


def resolve_id_col(columns: Iterable[object], id_col: str) -> str:
    """`id_col`, or the one column that matches it but for case (a table's "id" for the default
    "ID"); `id_col` unchanged when there is none (the ids are then row numbers)."""
    names = [str(c) for c in columns]
    if id_col in names:
        return id_col
    matches = [c for c in names if c.lower() == id_col.lower()]
    return matches[0] if len(matches) == 1 else id_col


def _read_ids(df: pd.DataFrame, id_col: str, source: str) -> list[str]:
    """The id column as strings, or row numbers "0", "1", ... when the column is absent."""
    if id_col not in df.columns:
        return [str(i) for i in range(len(df))]
    ids = df[id_col]
    missing = np.flatnonzero(ids.isna().to_numpy() | (ids.astype("str").str.strip() == ""))
    if len(missing):
        raise DataError(f"{source} row {missing[0] + 1}: column {quoted(id_col)} is empty")
    return ids.astype("str").tolist()


def rows_as_texts(examples: Examples, id_col: str, has_ids: bool, from_list: bool) -> Examples:
    """The rows as training reads them: rows that share an id and its text are one text, and so
    are, without ids, the rows of one label each from a list column that repeat a text."""
    examples = _one_row_per_id(examples, id_col)
    return examples if has_ids or not from_list else _one_row_per_text(examples)


def _one_row_per_id(examples: Examples, id_col: str) -> Examples:
    """Rows that share an id and its text are one text with the labels of all of them (a table
    of one row per text and label, as a database export writes it), said in a warning; rows
    that share an id but not their text are an error."""
    codes, unique = pd.factorize(pd.Series(examples.ids))
    if len(unique) == len(codes):
        return examples
    first = np.unique(codes, return_index=True)[1]  # each id's first row, in order of ids
    texts = np.asarray(examples.texts, dtype=object)
    differ = np.flatnonzero(texts != texts[first[codes]])
    if len(differ):
        rows = np.flatnonzero(codes == codes[differ[0]])
        raise DataError(
            f"{examples.source}: rows {row_numbers(rows)} share {clean(id_col)} "
            f"{quoted(unique[codes[differ[0]]])} but not their text (ids name one text each)"
        )
    warnings.warn(
        f"{examples.source}: {len(codes)} rows hold {len(unique)} texts: rows that share "
        f"{clean(id_col)} and text are read as one text with the labels of all of them",
        stacklevel=3,
    )
    return _merged(examples, codes)


def _one_row_per_text(examples: Examples) -> Examples:
    """Without ids, rows of one label each that repeat a text with other labels (a table of one
    row per text and label) are one text with the labels of all of them, said in a warning;
    unless such texts are under LONG_SHARE of them (a class table's stray conflicting repeats)."""
    if examples.y is None or (examples.y.sum(axis=1) > 1).any():
        return examples
    codes, unique = pd.factorize(pd.Series(examples.texts))
    if len(unique) == len(codes):
        return examples
    merged = _merged(examples, codes)
    several = int((merged.y.sum(axis=1) > 1).sum())
    if several < LONG_SHARE * len(unique):
        return examples
    warnings.warn(
        f"{examples.source}: {len(codes)} rows of one label each hold {len(unique)} texts "
        f"({several} with several labels): rows of the same text are read as one text with "
        "the labels of all of them (give an id column to name texts)",
        stacklevel=3,
    )
    return merged


def _merged(examples: Examples, codes: np.ndarray) -> Examples:
    """One row per code: the first row's id and text, the labels of all its rows."""
    first = np.unique(codes, return_index=True)[1]
    y = examples.y
    if y is not None:
        y = np.zeros((len(first), y.shape[1]), dtype=y.dtype)
        np.maximum.at(y, codes, examples.y)
    return Examples(
        [examples.ids[i] for i in first],
        [examples.texts[i] for i in first],
        examples.labels,
        y,
        examples.source,
    )


def label_matrix_from_columns(
    df: pd.DataFrame, cols: list[str], source: str, hint: bool = False
) -> np.ndarray:
    """0/1 label columns -> bool matrix; any other value (or an empty cell) is an error,
    which with `hint` (columns read as labels by default) says how to name the labels."""
    require_columns(df, cols, source, "--label-cols")
    y = np.zeros((len(df), len(cols)), dtype=bool)
    for j, col in enumerate(cols):
        raw = df[col]
        values = label_numbers(raw)
        bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
        if len(bad):
            more = f" ({len(bad)} bad values in this column)" if len(bad) > 1 else ""
            value = show_value(raw.iloc[bad[0]])
            advice = _one_stray_value(raw, values, bad) or (
                _advice(col, values, len(cols)) if hint else ""
            )
            raise DataError(
                f"{source} row {bad[0] + 1}: label {quoted(col)} is {value}, expected 0 or 1"
                f"{more}{advice}"
            )
        y[:, j] = values == 1.0
    return y


def _one_stray_value(raw: pd.Series, values: np.ndarray, bad: np.ndarray) -> str:
    """Advice for a 0/1 column whose bad cells all hold one thing: empty cells (a sheet that
    marks only the 1s), or one negative value such as -1 (a test set's 'not scored')."""
    if len(bad) == len(values) or not np.isin(np.delete(values, bad), (0.0, 1.0)).all():
        return ""
    if raw.iloc[bad].isna().all():
        return "; its other cells are 0 or 1: if an empty cell means 0, write 0 in it"
    stray = np.unique(values[bad])
    if len(stray) == 1 and stray[0] < 0:
        return f"; its other cells are 0 or 1: if {stray[0]:g} means unknown, leave those rows out"
    return ""


def _advice(col: str, values: np.ndarray, columns: int) -> str:
    """How to name the labels of a default 0/1 column with other values: the one label column,
    holding whole numbers beyond 0 and 1 that each repeat (class numbers 1, 2, 3, 4; a stray 2
    in a 0/1 column does not repeat), is the list column to use."""
    numbers = values[~np.isnan(values)]
    classes, counts = np.unique(numbers, return_counts=True)
    whole = len(numbers) == len(values) and (classes == classes.round()).all()
    if columns == 1 and len(classes) > 2 and whole and counts.min() > 1:
        shown = ", ".join(f"{c:g}" for c in classes[:SHOW_ROWS]) + (
            ", ..." if len(classes) > SHOW_ROWS else ""
        )
        return (
            f"; it holds class numbers ({shown}): --labels-col {quoted(col)} reads them as labels"
        )
    return DEFAULT_COLUMNS_HINT


def _warn_labels_without_positives(y: np.ndarray, labels: list[str], source: str) -> None:
    empty = [name for name, count in zip(labels, y.sum(axis=0)) if count == 0]
    if empty:
        names = ", ".join(quoted(n) for n in empty[:SHOW_NAMES])  # not thousands of names
        more = f" and {len(empty) - SHOW_NAMES} more" if len(empty) > SHOW_NAMES else ""
        warnings.warn(
            f"{source}: label(s) with no positive example: {names}{more}",
            stacklevel=3,
        )


# ---------------------------------------------------------------- examples


def as_frame(data: object) -> object:
    """A table object that converts itself (`to_pandas()`: a Hugging Face `Dataset`, a pyarrow
    `Table`, a polars `DataFrame`) as a pandas DataFrame, its `ClassLabel` numbers as names;
    anything else unchanged."""
    if isinstance(data, str | Path | pd.DataFrame):
        return data
    if not callable(getattr(data, "to_pandas", None)):
        return data
    return with_class_names(data.to_pandas(), table_class_names(data))


def read_rows(
    data: str | Path | pd.DataFrame,
    text_cols: Sequence[str],
    id_col: str,
    labels_col: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """A table (path or DataFrame) that has rows, and the name error messages give it.

    The id and text columns of a file are read as strings, and so is a CSV's `labels_col`; a
    table object with `to_pandas()` is read as its DataFrame.
    """
    data = as_frame(data)
    if isinstance(data, pd.DataFrame):
        df, source = data.reset_index(drop=True), "DataFrame"
    else:
        str_cols = [*id_spellings(id_col), *text_cols]
        df = read_table(data, str_cols, list_cols=[labels_col] if labels_col else [])
        source = Path(data).name
    if len(df) == 0:
        raise DataError(f"{source}: no data rows")
    return df, source


def load_examples(
    data: str | Path | pd.DataFrame,
    text_cols: Sequence[str],
    id_col: str = "ID",
    label_cols: Sequence[str] | None = None,
    labels_col: str | None = None,
    label_sep: str = "|",
    labels: Sequence[str] | None = None,
    require_labels: bool = True,
) -> Examples:
    """Read and validate a table (path or DataFrame) into Examples.

    Labels come either from 0/1 columns (`label_cols`; default: every column that is neither
    the id nor a text column) or from one list column `labels_col` ("cs.AI|math.CO").
    `labels` fixes the label order (a trained model's labels). With `require_labels=False`
    labels are not read and `y` is None.
    """
    text_cols = [text_cols] if isinstance(text_cols, str) else list(text_cols)
    df, source = read_rows(data, text_cols, id_col, labels_col if require_labels else None)
    if require_labels and is_document_folder(data):
        df = with_subjects(df, source)
    id_col = resolve_id_col(df.columns, id_col)
    ids = _read_ids(df, id_col, source)
    texts = join_texts(df, text_cols, source)
    if not require_labels:
        return _one_row_per_id(Examples(ids, texts, list(labels or []), None, source), id_col)
    rest = default_label_columns(df, id_col, text_cols)
    if labels is not None and labels_col not in df.columns:
        labels_col = None  # the model's list column is not here: its labels in 0/1 columns?
    labels_col = list_column(df, label_cols, labels_col, labels, rest, label_sep)
    if labels_col is not None:
        names, y = labels_from_list_column(df, labels_col, label_sep, labels, source)
    else:
        names = _label_column_names(df, id_col, text_cols, label_cols, labels, source)
        y = label_matrix_from_columns(df, names, source, hint=label_cols is None and labels is None)
    examples = rows_as_texts(
        Examples(ids, texts, names, y, source), id_col, id_col in df.columns, labels_col is not None
    )
    _warn_labels_without_positives(examples.y, names, source)
    return examples


def default_label_columns(df: pd.DataFrame, id_col: str, text_cols: Sequence[str]) -> list[str]:
    """Every column that is neither the id nor a text column: read as 0/1 labels by default.
    Columns without a header (pandas names them "Unnamed: 0", ...: a saved index) are skipped."""
    return [
        str(c)
        for c in df.columns
        if c != id_col and c not in text_cols and not UNNAMED.fullmatch(str(c))
    ]


def _label_column_names(
    df: pd.DataFrame,
    id_col: str,
    text_cols: list[str],
    label_cols: Sequence[str] | None,
    labels: Sequence[str] | None,
    source: str,
) -> list[str]:
    """Which 0/1 columns hold labels: `labels` (model order), `label_cols`, or all the rest."""
    if labels is not None:
        if label_cols is None:  # named columns leave the others out on purpose
            _require_model_labels(df, labels, source)
            _warn_unknown_label_columns(df, id_col, text_cols, labels, source)
        return list(labels)
    if label_cols is not None:
        return list(label_cols)
    names = default_label_columns(df, id_col, text_cols)
    if not names:
        raise DataError(
            f"{source}: no label columns (columns are: {name_list(df.columns)}); "
            "add 0/1 label columns or name a list column with labels_col"
        )
    return names


def _require_model_labels(df: pd.DataFrame, labels: Sequence[str], source: str) -> None:
    """A table scored against a model's `labels` holds each as a 0/1 column (or all of them in
    one list column, found before): name those it lacks."""
    missing = [n for n in labels if n not in df.columns]
    if missing:
        more = f" and {len(missing) - SHOW_NAMES} more" if len(missing) > SHOW_NAMES else ""
        raise DataError(
            f"{source}: no column for {len(missing)} of the model's {len(labels)} labels: "
            f"{name_list(missing[:SHOW_NAMES])}{more}; a table to score holds the labels the "
            f"model was trained on as 0/1 columns of those names, or in one list column "
            f"(columns are: {name_list(df.columns)})"
        )


def _warn_unknown_label_columns(
    df: pd.DataFrame, id_col: str, text_cols: list[str], labels: Sequence[str], source: str
) -> None:
    """Warn of 0/1 columns that are not among the model's `labels`: labels it cannot score,
    which the table's figures leave out."""
    rest = [c for c in default_label_columns(df, id_col, text_cols) if c not in set(labels)]
    unknown = [c for c in rest if np.isin(label_numbers(df[c]), (0.0, 1.0)).all()]
    if unknown:
        names = ", ".join(quoted(n) for n in unknown[:SHOW_NAMES])
        more = f" and {len(unknown) - SHOW_NAMES} more" if len(unknown) > SHOW_NAMES else ""
        warnings.warn(
            f"{source}: 0/1 column(s) {names}{more} are not labels of the model and are left "
            "out (its labels come from the training table)",
            stacklevel=4,
        )
