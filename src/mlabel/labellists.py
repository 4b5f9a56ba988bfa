"""Labels given as lists in one column ("cs.AI|math.CO", ["cs.AI", "math.CO"], Annif's
"<uri> <uri>"): which column holds them, the separator that splits them, and their 0/1 matrix."""

from __future__ import annotations

import ast
import re
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlabel.cells import SHOW_ROWS, label_numbers, require_columns, show_value
from mlabel.docdir import JSON_SUBJECTS, holds_subjects, subject_name
from mlabel.errors import DataError, quoted
from mlabel.tablefile import ANNIF_COLUMNS, ANNIF_URIS

ANNIF_URI = re.compile(r"<([^<>\s]+)>")
# an item of a list written as text: a quoted string, or a number (or other literal) unquoted
LIST_ITEM = re.compile(r"""'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[^\s,'"\[\]{}:]+""")
LIST_SEPARATORS = ("|", ";", ",", "/", "\t")  # where label lists are commonly split


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
    return bool(np.isnan(label_numbers(present)).all()) or any(map(_is_list, present))


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
        _warn_joined_names(names, sep, column, source, any(len(row) > 1 for row in lists))
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
        holding = [c for c in text if other in c]
        joined = _joined(holding, other, known)
        if joined and 2 * len(joined) >= len(holding):
            warnings.warn(
                f"{source}: labels of column {quoted(column)} split at {other!r}, which joins "
                f"them (e.g. {quoted(joined[0])}); no cell holds {sep!r} (--label-sep sets it)",
                stacklevel=4,
            )
            return other
    return sep


def _warn_joined_names(names: list[str], sep: str, column: str, source: str, split: bool) -> None:
    """Warn when label names look like lists joined by another separator than `sep`: names
    such as "Physics; Mathematics" whose parts are labels of their own, or, where `sep` split
    no cell (`split` False), whose parts recur in other names ("cs,math" and "math,stats", no
    cell holding "math" alone). Lists split at `sep` keep names such as "Art, Modern" and
    "Art, Medieval" (subject headings) whole without a warning."""
    for other in (s for s in LIST_SEPARATORS if s != sep):
        recurring = set() if split else _recurring_parts(names, other)
        joined = _joined(names, other, set(names) | recurring)
        if joined:
            warnings.warn(
                f"{source}: {len(joined)} label(s) of column {quoted(column)} look like lists joined "
                f"by {other!r} (e.g. {quoted(joined[0])}, whose parts are labels or recur in other "
                f"labels), but labels are split at {sep!r}: pass --label-sep {other!r}",
                stacklevel=4,
            )
            return


def _recurring_parts(names: list[str], sep: str) -> set[str]:
    """Parts that `sep` splits from two or more of the `names` ("France" of "Paris, France" and
    "Lyon, France"; "Paris" stays alone, so that name is not taken for a list). None for "/",
    which also splits URIs and paths ("http://a/1", "http://b/1")."""
    if sep == "/":
        return set()
    counts = Counter(part for name in names if sep in name for part in set(_parts(name, sep)))
    return {part for part, count in counts.items() if count > 1}


def _joined(items: list[str], sep: str, known: set[str]) -> list[str]:
    """The `items` that `sep` splits into `known` labels only: lists joined by `sep`."""
    return [item for item in items if sep in item and set(_parts(item, sep)) <= known]


def _parts(name: str, sep: str) -> list[str]:
    return [p.strip() for p in name.split(sep) if p.strip()]


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
                f"{source} row {row}: column {quoted(column)} is {show_value(cell)}, expected label "
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
    """A list written as text as a list: Python's form ("['a', 'b']", '["a"]', "[3, 27]") or
    numpy's, without commas ("['a' 'b']", "[3 27]", as `datasets`' `to_csv` writes lists); other
    text unchanged. A flat list's items are read one by one: Python reads "'a' 'b'" as "ab"."""
    inner = text.strip()[1:-1]
    flat = re.fullmatch(r"[\s,]*", LIST_ITEM.sub("", inner)) is not None
    try:  # literals only: never runs code
        if flat:
            return [ast.literal_eval(item) for item in LIST_ITEM.findall(inner)]
        value = ast.literal_eval(text.strip())  # nested lists or mappings: refused by the caller
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, list) else text


def _label_matrix_from_lists(
    lists: list[list[str]], labels: list[str], column: str, source: str
) -> np.ndarray:
    """Label lists -> bool matrix in `labels` order. Labels outside `labels` (a test table's
    subjects the training table never had) are left out with a warning that counts them, as
    Annif leaves out subjects its vocabulary lacks: the model cannot score them."""
    index = {name: j for j, name in enumerate(labels)}
    unknown: dict[str, int] = {}  # label -> first 0-based row where it appears
    dropped = 0
    y = np.zeros((len(lists), len(labels)), dtype=bool)
    for i, names in enumerate(lists):
        for name in names:
            if name in index:
                y[i, index[name]] = True
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
