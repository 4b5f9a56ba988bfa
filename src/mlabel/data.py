"""Resolve a table's text and label columns and validate them into Examples (reading the
file: mlabel.tables; splits: mlabel.split).

Row numbers in error messages are 1-based data rows, counted the way a person counts them in
the file: the first row after the header is row 1 (for a DataFrame, row 1 is its first row).
A quoted CSV field that spans several lines still counts as one row.
"""

from __future__ import annotations

import ast
import difflib
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlabel.docdir import (
    JSON_SUBJECTS,
    holds_subjects,
    is_document_folder,
    subject_name,
    with_subjects,
)
from mlabel.errors import DataError, clean, quoted
from mlabel.tablefile import (
    ANNIF_COLUMNS,
    ANNIF_URIS,
)
from mlabel.tables import read_table

SHOW_ROWS = 10  # how many row numbers an error message lists before "..."
UNNAMED = re.compile(r"Unnamed: \d+")  # pandas' name for a column without a header
BOOL_WORDS = {"true": 1, "false": 0}  # read as label values like pandas' True/False
SHOW_NAMES = 20  # how many label names a warning lists before "and N more"
ANNIF_URI = re.compile(r"<([^<>\s]+)>")
LIST_SEPARATORS = ("|", ";", ",", "/", "\t")  # where label lists are commonly split
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
    y: np.ndarray | None  # (n, len(labels)) float32, or None when labels were not read
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


def _rows(positions: Iterable[int]) -> str:
    """'3, 7, 12' (1-based), cut after SHOW_ROWS numbers."""
    rows = [str(int(p) + 1) for p in positions]
    return ", ".join(rows[:SHOW_ROWS]) + (", ..." if len(rows) > SHOW_ROWS else "")


def _show(value: object) -> str:
    """A cell value as the user would recognise it."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "empty"
    if isinstance(value, str):
        return "empty" if not value.strip() else clean(repr(value))
    return clean(value)


def require_columns(
    df: pd.DataFrame, cols: Iterable[str], source: str, option: str | None = None
) -> None:
    """Raise DataError for the first of `cols` that `df` lacks, listing columns, a suggestion
    and the command-line `option` that names such columns ("--text-cols")."""
    present = [str(c) for c in df.columns]
    for col in cols:
        if col in df.columns:
            continue
        guess = _guess_column(df, col, text=option == "--text-cols")
        hint = f"; did you mean {quoted(guess)}?" if guess else ""
        hint += f" ({option} names them)" if option else ""
        raise DataError(
            f"{source}: column {quoted(col)} not found; columns are: {_names(present)}{hint}"
        )


def _guess_column(df: pd.DataFrame, col: str, text: bool) -> str | None:
    """The column the user likely meant by `col`: one spelt the same but for case, one whose name
    contains it ("comment_text" for "text"), a close spelling, or for text the column holding the
    longest texts; text is never looked for in a column of numbers."""
    names = [str(c) for c in df.columns if not text or not pd.api.types.is_numeric_dtype(df[c])]
    wanted = col.lower()
    for guesses in (
        [c for c in names if c.lower() == wanted],
        [c for c in names if wanted in c.lower()],
        difflib.get_close_matches(col, names, n=1, cutoff=0.5),
    ):
        if guesses:
            return guesses[0]
    lengths = {c: df[c].astype("str").str.len().mean() for c in names if text and len(df)}
    return max(lengths, key=lengths.__getitem__) if lengths else None


def _names(names: Iterable[object]) -> str:
    """'a, b, c' for a message, each name cleaned."""
    return ", ".join(clean(n) for n in names)


def text_cells(df: pd.DataFrame, col: str) -> pd.Series:
    """A text column as stripped strings, with "" for missing cells."""
    return df[col].astype("str").where(df[col].notna(), "").str.strip()


def join_text_parts(parts: Iterable[str]) -> str:
    """One text from a row's (stripped) text fields: the non-empty ones, joined with "\\n".

    Training, prediction and the server all build their input this way.
    """
    return "\n".join(p for p in parts if p)


def join_texts(df: pd.DataFrame, text_cols: Sequence[str], source: str) -> list[str]:
    """Join the text columns of each row with "\\n", in order; a row with no text is an error.

    Empty or missing cells are skipped inside a row; a row whose text columns are all empty
    raises DataError naming how many rows and which (a chunk from `iter_table`, whose index
    starts at its first row's position, is counted from the start of the file).
    """
    if not text_cols:
        raise DataError(f"{source}: no text columns given")
    require_columns(df, text_cols, source, "--text-cols")
    parts = [text_cells(df, c) for c in text_cols]
    texts = [join_text_parts(row) for row in zip(*(p.tolist() for p in parts))]
    first = df.index.start if isinstance(df.index, pd.RangeIndex) and df.index.step == 1 else 0
    empty = [first + i for i, t in enumerate(texts) if not t]
    if empty:
        cols = _names(text_cols)
        raise DataError(
            f"{source}: {len(empty)} row(s) with empty or missing text in {cols}: "
            f"row {_rows(empty)}"
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
    ids = ids.astype("str").tolist()
    _check_unique_ids(ids, id_col, source)
    return ids


def _check_unique_ids(ids: list[str], id_col: str, source: str) -> None:
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if not dup.any():
        return
    first = ids[int(np.argmax(dup))]
    rows = [i for i, v in enumerate(ids) if v == first]
    n_ids = len({v for v, d in zip(ids, dup) if d})
    raise DataError(
        f"{source}: duplicate {clean(id_col)} {quoted(first)} in rows {_rows(rows)} "
        f"({n_ids} duplicated id(s) in all)"
    )


def label_matrix_from_columns(
    df: pd.DataFrame, cols: list[str], source: str, hint: bool = False
) -> np.ndarray:
    """0/1 label columns -> float32 matrix; any other value (or an empty cell) is an error,
    which with `hint` (columns read as labels by default) says how to name the labels."""
    require_columns(df, cols, source, "--label-cols")
    y = np.zeros((len(df), len(cols)), dtype=np.float32)
    for j, col in enumerate(cols):
        raw = df[col]
        values = _label_numbers(raw)
        bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
        if len(bad):
            more = f" ({len(bad)} bad values in this column)" if len(bad) > 1 else ""
            raise DataError(
                f"{source} row {bad[0] + 1}: label {quoted(col)} is {_show(raw.iloc[bad[0]])}, "
                f"expected 0 or 1{more}{_advice(col, values, len(cols)) if hint else ''}"
            )
        y[:, j] = values
    return y


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


def _label_numbers(raw: pd.Series) -> np.ndarray:
    """A label column as float64: numbers, booleans and the words "true"/"false" (any case, as
    a CSV column that mixes them with 0/1 holds them); NaN for anything else."""
    if not (pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw)):
        raw = raw.map(lambda v: BOOL_WORDS.get(v.strip().lower(), v) if isinstance(v, str) else v)
    return pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()


def _parse_label_lists(cells: pd.Series, sep: str, column: str, source: str) -> list[list[str]]:
    """ "a|b" -> ["a", "b"]; a list cell (JSON Lines, Parquet) is taken as it is, and so is a
    list written as text ("['a', 'b']", as pandas writes lists to CSV) and Annif's subject list
    ("<http://x/1> <http://x/2>" -> ["http://x/1", "http://x/2"]); an empty or missing cell
    means no labels. A cell holding a mapping or nested lists is an error."""
    lists = []
    for row, cell in enumerate(cells, start=1):
        names = _label_list(cell, sep)
        if names is None:
            raise DataError(
                f"{source} row {row}: column {quoted(column)} is {_show(cell)}, expected label "
                f"names ('a{sep}b' or a list of names)"
            )
        lists.append(names)
    return lists


def _label_list(cell: object, sep: str) -> list[str] | None:
    """The label names in one cell; None when it holds something else than names."""
    if isinstance(cell, str) and cell.strip().startswith("[") and cell.strip().endswith("]"):
        cell = _literal_list(cell)
    if isinstance(cell, list | tuple | np.ndarray) and any(isinstance(p, dict) for p in cell):
        parts = [subject_name(p) for p in cell]  # Annif's JSON Lines: [{"uri": ...}, ...]
        if None in parts:
            return None
    elif isinstance(cell, list | tuple | np.ndarray):
        if not all(pd.api.types.is_scalar(p) for p in cell):
            return None
        parts = [str(p) for p in cell if not pd.isna(p)]
    elif isinstance(cell, dict):
        return None
    elif pd.isna(cell):
        return []
    elif isinstance(cell, float) and cell.is_integer():
        parts = [str(int(cell))]  # an integer label in a column that pandas made float by a NaN
    elif isinstance(cell, str) and ANNIF_URIS.fullmatch(cell):
        parts = ANNIF_URI.findall(cell)  # Annif's corpus form: the URIs are the labels
    else:
        parts = str(cell).split(sep)
    return [p.strip() for p in parts if p.strip()]


def _literal_list(text: str) -> list | str:
    """A list literal ("['a', 'b']", '["a"]', "[3, 27]") as a list; other text unchanged."""
    try:
        value = ast.literal_eval(text.strip())  # literals only: never runs code
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, list) else text


def _label_matrix_from_lists(
    lists: list[list[str]], labels: list[str], column: str, source: str
) -> np.ndarray:
    """Label lists -> float32 matrix in `labels` order. Labels outside `labels` (a test table's
    subjects the training table never had) are left out with a warning that counts them, as
    Annif leaves out subjects its vocabulary lacks: the model cannot score them."""
    index = {name: j for j, name in enumerate(labels)}
    unknown: dict[str, int] = {}  # label -> first 0-based row where it appears
    dropped = 0
    y = np.zeros((len(lists), len(labels)), dtype=np.float32)
    for i, names in enumerate(lists):
        for name in names:
            if name in index:
                y[i, index[name]] = 1.0
            else:
                unknown.setdefault(name, i)
                dropped += 1
    if unknown:
        shown = ", ".join(
            f"{quoted(n)} (row {r + 1})" for n, r in list(unknown.items())[:SHOW_ROWS]
        )
        more = ", ..." if len(unknown) > SHOW_ROWS else ""
        total = dropped + int(y.sum())
        warnings.warn(
            f"{source}: column {quoted(column)} has {len(unknown)} label(s) the model does not know, "
            f"left out ({dropped} of {total} labels given, {dropped / total:.1%}): {shown}{more}",
            stacklevel=5,
        )
    return y


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
    `Table`, a polars `DataFrame`) as a pandas DataFrame; anything else unchanged."""
    if isinstance(data, str | Path | pd.DataFrame):
        return data
    return data.to_pandas() if callable(getattr(data, "to_pandas", None)) else data


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
        return Examples(ids, texts, list(labels or []), None, source)
    rest = default_label_columns(df, id_col, text_cols)
    labels_col = list_column(df, label_cols, labels_col, labels, rest, label_sep)
    if labels_col is not None:
        names, y = labels_from_list_column(df, labels_col, label_sep, labels, source)
    else:
        names = _label_column_names(df, id_col, text_cols, label_cols, labels, source)
        y = label_matrix_from_columns(df, names, source, hint=label_cols is None and labels is None)
    _warn_labels_without_positives(y, names, source)
    return Examples(ids, texts, names, y, source)


def list_column(
    df: pd.DataFrame,
    label_cols: Sequence[str] | None,
    labels_col: str | None,
    labels: Sequence[str] | None = None,
    rest: Sequence[str] = (),
    sep: str = "|",
) -> str | None:
    """The list column that holds the labels: `labels_col`, else the `subject_uris` column of a
    corpus in Annif's form (or the `subjects` of its JSON Lines form), else the one column
    `rest` leaves for labels (neither id nor text) when it holds names or lists rather than
    0/1 (`label: sports`; lists split at `sep`), unless 0/1 columns are named (`label_cols`,
    or a model's `labels` that are all columns of the table); None: 0/1 columns."""
    named = label_cols is not None or (labels is not None and set(labels) <= set(df.columns))
    if labels_col is not None or named:
        return labels_col
    if ANNIF_COLUMNS[1] in df.columns:
        return ANNIF_COLUMNS[1]
    if JSON_SUBJECTS in df.columns and holds_subjects(df[JSON_SUBJECTS]):
        return JSON_SUBJECTS
    if len(rest) == 1 and _holds_names(df[rest[0]], sep):
        return rest[0]
    return None


def _holds_names(cells: pd.Series, sep: str) -> bool:
    """Whether a column holds label names or lists rather than 0/1 or text: every cell parses
    as names, names repeat (each is given twice on average: a leftover text column's titles do
    not), and no cell is a number or true/false, or some cell is a list ("3|5", "[3, 5]"). A 0/1
    column with a stray value ("yes") stays one, and its error names the value."""
    if pd.api.types.is_numeric_dtype(cells) or pd.api.types.is_bool_dtype(cells):
        return False  # numbers alone: a 0/1 column (or one with bad values)
    present = cells[cells.notna()]
    lists = [_label_list(cell, sep) for cell in present]
    if not lists or None in lists:
        return False
    given = [name for names in lists for name in names]
    if 2 * len(set(given)) > len(given):
        return False
    return bool(np.isnan(_label_numbers(present)).all()) or any(map(_is_list, present))


def _is_list(cell: object) -> bool:
    if isinstance(cell, str):
        return any(sep in cell for sep in LIST_SEPARATORS) or cell.strip().startswith("[")
    return isinstance(cell, list | tuple | np.ndarray)


def labels_from_list_column(
    df: pd.DataFrame, column: str, sep: str, labels: Sequence[str] | None, source: str
) -> tuple[list[str], np.ndarray]:
    """Label names and 0/1 matrix from one list column ("a|b"); `labels` fixes names and order.

    Without `labels`, the names are every label the column holds, sorted.
    """
    require_columns(df, [column], source, "--labels-col")
    sep = _list_separator(df[column], sep, labels, column, source)
    lists = _parse_label_lists(df[column], sep, column, source)
    names = list(labels) if labels is not None else sorted({n for row in lists for n in row})
    if not names:
        raise DataError(f"{source}: column {quoted(column)} holds no labels at all")
    if labels is None:
        _warn_joined_names(names, sep, column, source)
    return names, _label_matrix_from_lists(lists, names, column, source)


def _list_separator(
    cells: pd.Series, sep: str, labels: Sequence[str] | None, column: str, source: str
) -> str:
    """`sep`, unless no cell holds it and another separator joins labels in most cells that hold
    it ("sports, news" where "sports" and "news" are labels of their own: whole cells, or the
    model's `labels`); that one is said in a warning."""
    text = [c.strip() for c in cells if isinstance(c, str) and c.strip()]
    text = [c for c in text if not c.startswith("[") and not ANNIF_URIS.fullmatch(c)]
    if any(sep in c for c in text):
        return sep
    known = set(labels) if labels is not None else set(text)
    for other in (s for s in LIST_SEPARATORS if s != sep):
        joined = [c for c in text if other in c]
        if joined and 2 * sum(set(_parts(c, other)) <= known for c in joined) >= len(joined):
            warnings.warn(
                f"{source}: labels of column {quoted(column)} split at {other!r}, which joins "
                f"them (e.g. {quoted(joined[0])}); no cell holds {sep!r} (--label-sep sets it)",
                stacklevel=4,
            )
            return other
    return sep


def _warn_joined_names(names: list[str], sep: str, column: str, source: str) -> None:
    """Warn when label names look like lists joined by another separator than `sep`: names
    such as "Physics; Mathematics" whose parts are labels of their own too."""
    known = set(names)
    for other in (s for s in LIST_SEPARATORS if s != sep):
        joined = [n for n in names if other in n and set(_parts(n, other)) <= known]
        if joined:
            warnings.warn(
                f"{source}: {len(joined)} label(s) of column {quoted(column)} look like lists joined "
                f"by {other!r} (e.g. {quoted(joined[0])}, whose parts are labels too), but labels are "
                f"split at {sep!r}: pass --label-sep {other!r}",
                stacklevel=4,
            )
            return


def _parts(name: str, sep: str) -> list[str]:
    return [p.strip() for p in name.split(sep) if p.strip()]


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
            _warn_unknown_label_columns(df, id_col, text_cols, labels, source)
        return list(labels)
    if label_cols is not None:
        return list(label_cols)
    names = default_label_columns(df, id_col, text_cols)
    if not names:
        raise DataError(
            f"{source}: no label columns (columns are: {_names(df.columns)}); "
            "add 0/1 label columns or name a list column with labels_col"
        )
    return names


def _warn_unknown_label_columns(
    df: pd.DataFrame, id_col: str, text_cols: list[str], labels: Sequence[str], source: str
) -> None:
    """Warn of 0/1 columns that are not among the model's `labels`: labels it cannot score,
    which the table's figures leave out."""
    rest = [c for c in default_label_columns(df, id_col, text_cols) if c not in set(labels)]
    unknown = [c for c in rest if np.isin(_label_numbers(df[c]), (0.0, 1.0)).all()]
    if unknown:
        names = ", ".join(quoted(n) for n in unknown[:SHOW_NAMES])
        more = f" and {len(unknown) - SHOW_NAMES} more" if len(unknown) > SHOW_NAMES else ""
        warnings.warn(
            f"{source}: 0/1 column(s) {names}{more} are not labels of the model and are left "
            "out (its labels come from the training table)",
            stacklevel=4,
        )
