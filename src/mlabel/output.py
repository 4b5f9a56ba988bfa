"""Writing prediction tables (CSV, JSONL, Parquet) one chunk at a time, wide (one column per
label) or long (one row per id, label and score)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from mlabel.atomic import replace_on_success
from mlabel.errors import DataError
from mlabel.tables import count_rows

OUTPUT_FORMATS = (".csv", ".jsonl", ".parquet")
LAYOUTS = ("wide", "long")
LONG_COLUMNS = ("label", "score")  # after the id column


class TableWriter:
    """Append chunks of (id, one column per label) with `write`, or of (id, label, score) rows
    with `write_long`, to a file; the format follows the extension.

    The table is written to a temporary file that replaces `path` when the `with` block ends
    without an error; until then (and after a failure or a kill) `path` keeps its old content.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fmt = self.path.suffix.lower()
        if self.fmt not in OUTPUT_FORMATS:
            raise DataError(f"{self.path.name}: output must end in {', '.join(OUTPUT_FORMATS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet: pq.ParquetWriter | None = None
        self._first = True

    def __enter__(self) -> TableWriter:
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(replace_on_success(self.path))
        self._stack.callback(self._close)  # runs first: the table is complete before it replaces
        return self

    def write(self, ids: list[str], id_col: str, labels: list[str], values: np.ndarray) -> None:
        frame = pd.DataFrame(values, columns=labels)
        frame.insert(0, id_col, ids)
        self._append(frame)

    def write_long(
        self, id_col: str, ids: np.ndarray, labels: np.ndarray, scores: np.ndarray
    ) -> None:
        """Rows of (id, label, score). Typed columns: an empty chunk has the same schema."""
        label_col, score_col = LONG_COLUMNS
        frame = pd.DataFrame(
            {
                id_col: pd.Series(ids, dtype="string"),
                label_col: pd.Series(labels, dtype="string"),
                score_col: np.round(np.asarray(scores, dtype=np.float64), 6),  # as the server
            }
        )
        self._append(frame)

    def _append(self, frame: pd.DataFrame) -> None:
        if self.fmt == ".csv":
            frame.to_csv(self._tmp, mode="a", header=self._first, index=False, float_format="%.6f")
        elif self.fmt == ".jsonl":
            if frame.empty:  # pandas would write a blank line
                return
            with open(self._tmp, "a", encoding="utf-8") as f:
                frame.to_json(f, orient="records", lines=True)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table)
        self._first = False

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self._tmp.touch()  # no chunk at all: an empty file, not last run's table


class RowsProgress:
    """A progress bar of a table's rows done (out of `total`, else the rows `count_rows` finds),
    shown from the first chunk done on: an error in the first chunk stays one line."""

    def __init__(self, src: str | Path, verb: str, total: int | None = None):
        self.src, self.verb, self.total = Path(src), verb, total
        self._bar: tqdm | None = None

    def update(self, rows: int) -> None:
        if self._bar is None:
            desc = f"{self.verb} {self.src.name}"
            total = self.total if self.total is not None else count_rows(self.src)
            self._bar = tqdm(total=total, desc=desc, unit="row", leave=False)
        self._bar.update(rows)

    def __enter__(self) -> RowsProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
