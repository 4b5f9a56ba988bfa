"""Writing prediction tables (CSV, JSONL, Parquet) one chunk at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlabel.data import DataError

OUTPUT_FORMATS = (".csv", ".jsonl", ".parquet")


class TableWriter:
    """Append chunks of (id, one column per label) to a file; the format follows the extension."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fmt = self.path.suffix.lower()
        if self.fmt not in OUTPUT_FORMATS:
            raise DataError(f"{self.path.name}: output must end in {', '.join(OUTPUT_FORMATS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet: pq.ParquetWriter | None = None
        self._first = True

    def __enter__(self) -> TableWriter:
        self.path.unlink(missing_ok=True)
        return self

    def write(self, ids: list[str], id_col: str, labels: list[str], values: np.ndarray) -> None:
        frame = pd.DataFrame(values, columns=labels)
        frame.insert(0, id_col, ids)
        if self.fmt == ".csv":
            frame.to_csv(self.path, mode="a", header=self._first, index=False, float_format="%.6f")
        elif self.fmt == ".jsonl":
            with open(self.path, "a", encoding="utf-8") as f:
                frame.to_json(f, orient="records", lines=True)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        self._first = False

    def __exit__(self, exc_type, *exc) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if exc_type is not None:  # a half-written table would look complete
            self.path.unlink(missing_ok=True)
