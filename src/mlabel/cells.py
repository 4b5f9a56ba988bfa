"""How a table's cells and columns appear in error messages, and the checks that name them:
a missing column (with the one the user likely meant), a label cell read as a number.

Row numbers are 1-based data rows, counted the way a person counts them in the file: the first
row after the header is row 1 (for a DataFrame, row 1 is its first row).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from mlabel.errors import DataError, clean, quoted

SHOW_ROWS = 10  # how many row numbers an error message lists before "..."
HEADER_WORDS = 8  # a column "name" of this many words is text: the first line is a row of data
BOOL_WORDS = {"true": 1, "false": 0}  # read as label values like pandas' True/False


def row_numbers(positions: Iterable[int]) -> str:
    """'3, 7, 12' (1-based), cut after SHOW_ROWS numbers."""
    rows = [str(int(p) + 1) for p in positions]
    return ", ".join(rows[:SHOW_ROWS]) + (", ..." if len(rows) > SHOW_ROWS else "")


def show_value(value: object) -> str:
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
        if (data := _data_in_header(present)) is not None:
            raise DataError(
                f"{source}: column {quoted(col)} not found: the first line holds data, not column "
                f"names ({quoted(data)}); add a first line that names the columns"
            )
        guess = _guess_column(df, col, text=option == "--text-cols")
        hint = f"; did you mean {quoted(guess)}?" if guess else ""
        hint += f" ({option} names them)" if option else ""
        raise DataError(
            f"{source}: column {quoted(col)} not found; columns are: {name_list(present)}{hint}"
        )


def _data_in_header(names: list[str]) -> str | None:
    """A column name that is text rather than a name (a sentence of HEADER_WORDS words or more):
    the header of a table whose first line is a row of data."""
    return next((name for name in names if len(name.split()) >= HEADER_WORDS), None)


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


def name_list(names: Iterable[object]) -> str:
    """'a, b, c' for a message, each name cleaned."""
    return ", ".join(clean(n) for n in names)


def label_numbers(raw: pd.Series) -> np.ndarray:
    """A label column as float64: numbers, booleans and the words "true"/"false" (any case, as
    a CSV column that mixes them with 0/1 holds them); NaN for anything else."""
    if not (pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw)):
        raw = raw.map(lambda v: BOOL_WORDS.get(v.strip().lower(), v) if isinstance(v, str) else v)
    return pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
