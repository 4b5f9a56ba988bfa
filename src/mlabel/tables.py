"""Reading tables: the format from the file's extension (compressed or not), a whole table or
its chunks, each chunk's rows numbered from the start of the file; a folder is an Annif corpus
(`mlabel.docdir`)."""

from __future__ import annotations

import io
import json
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlabel.arrowdata import ARROW_SUFFIXES, arrow_files, arrow_table, class_names, with_class_names
from mlabel.docdir import documents, flatten_metadata, is_document_folder, iter_documents
from mlabel.errors import DataError, clean, quoted
from mlabel.tablefile import (
    ANNIF_OPTIONS,
    HIVE_MISSING,
    allow_json_array,
    annif_columns,
    check_parquet_row_sizes,
    csv_options,
    open_table_bytes,
    parquet_parts,
    partition_values,
    where_not_utf8,
)

TEXT_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".txt")  # read compressed too
LABEL_PREFIX = "__label__"  # fastText's mark of a label in a .txt line
FORMATS = (*TEXT_FORMATS, ".parquet", *ARROW_SUFFIXES)
# .json: JSON Lines (as `datasets` writes it), an array, or one object that holds the records
JSON_FORMATS = (".jsonl", ".json")
COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz")
COUNT_CHUNK_ROWS = 200_000  # rows per chunk when counting a CSV/TSV's rows
SPREADSHEETS = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")  # not read: their export is CSV


def table_format(path: str | Path) -> str:
    """The format of `path` ('.csv', ...) from its extension, ignoring a compression suffix."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in FORMATS or (fmt not in TEXT_FORMATS and Path(path).suffix.lower() != fmt):
        compressed = ", ".join(TEXT_FORMATS) + " may end in " + ", ".join(COMPRESSIONS)
        supported = f"{', '.join(FORMATS)} ({compressed}"
        advice = "; save a spreadsheet as CSV UTF-8" if fmt in SPREADSHEETS else ""
        raise DataError(
            f"{Path(path).name}: unsupported file type; supported: {supported}){advice}"
        )
    return fmt


def read_table(
    path: str | Path, str_cols: Iterable[str] = ("ID",), list_cols: Iterable[str] = ()
) -> pd.DataFrame:
    """Read a whole table; columns named in `str_cols` are read as strings (ids keep leading 0s).

    `list_cols` (label lists) are read as written in CSV/TSV ("3", "NA|x"); other formats keep
    their list cells.
    """
    return next(iter_table(path, chunk_rows=None, str_cols=str_cols, list_cols=list_cols))


def iter_table(
    path: str | Path,
    chunk_rows: int | None = 10_000,
    str_cols: Iterable[str] = ("ID",),
    list_cols: Iterable[str] = (),
) -> Iterator[pd.DataFrame]:
    """Stream a table in chunks of at most `chunk_rows` rows (None: one chunk).

    Each chunk's index is the 0-based position of its rows in the whole file; column names are
    strings. In CSV/TSV the `str_cols` and `list_cols` keep text such as "NA" or "007" as it is
    written. A folder of Parquet files is one table in parts, read in name order, and so is a
    `datasets` folder of Arrow files (`mlabel.arrowdata`); another folder is read as Annif's
    full-text document corpus (`mlabel.docdir`).
    """
    path = Path(path)
    if is_document_folder(path):
        yield from iter_documents(path, chunk_rows)
        return
    arrows, parts = arrow_files(path), parquet_parts(path)
    fmt = ".parquet" if parts else ".arrow" if arrows else table_format(path)
    if not (arrows or parts or path.is_file()):
        raise DataError(f"{path.name}: file not found")
    str_cols = list(str_cols)
    try:
        if arrows:
            yield from _iter_arrow(path, arrows, chunk_rows, str_cols)
        elif parts:
            yield from _iter_parquet_parts(path, parts, chunk_rows, str_cols)
        elif fmt == ".parquet":
            yield from _iter_parquet(path, chunk_rows, str_cols)
        else:
            yield from _iter_text_table(path, fmt, chunk_rows, str_cols, list(list_cols))
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path.name}: not UTF-8 text ({where_not_utf8(path)})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: no rows (the file is empty)") from None
    except (EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as err:
        raise DataError(f"{path.name}: damaged compressed file ({_first_line(err)})") from None
    except (pd.errors.ParserError, ValueError, OSError, pa.ArrowException) as err:
        form = " (expected one object per line, an array of objects or an object holding one)"
        form = form if fmt == ".json" else ""
        raise DataError(
            f"{path.name}: cannot read as {fmt[1:]}{form}: {_first_line(err)}"
        ) from None


def count_rows(path: str | Path) -> int | None:
    """How many rows the table holds: from its metadata (Parquet, a folder of Parquet parts, Arrow
    files, a document folder), else by a quick read of its first column (CSV/TSV) or its lines (JSON
    Lines, text); None for one JSON document or a table that cannot be read (`iter_table` says
    why)."""
    if is_document_folder(path):
        return len(documents(Path(path)))
    parts = parquet_parts(Path(path)) or [Path(path)]
    try:
        if arrows := arrow_files(Path(path)):
            return sum(arrow_table(p).num_rows for p in arrows)
        if any(p.suffix.lower() == ".parquet" for p in parts):
            return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        return _count_text_rows(Path(path), table_format(path))
    except (
        DataError,
        OSError,
        ValueError,
        EOFError,
        zlib.error,
        lzma.LZMAError,
        zipfile.BadZipFile,
        pa.ArrowException,
    ):
        return None


def _count_text_rows(path: Path, fmt: str) -> int | None:
    if fmt in JSON_FORMATS and not holds_json_lines(path):
        return None  # one JSON array or document: its rows are known once it is read whole
    with open_table_bytes(path) as f:
        if fmt in (".csv", ".tsv"):
            options = csv_options(path, fmt, [])
            chunks = pd.read_csv(f, **options, usecols=[0], chunksize=COUNT_CHUNK_ROWS)
            return sum(len(chunk) for chunk in chunks)
        return sum(1 for line in f if line.strip())  # JSON Lines, or a .txt's texts


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return clean(text.splitlines()[0], limit=200) if text else type(err).__name__


def _iter_text_table(
    path: Path, fmt: str, chunk_rows: int | None, str_cols: list[str], list_cols: list[str]
) -> Iterator[pd.DataFrame]:
    if fmt == ".txt":
        yield from _line_chunks(path, chunk_rows)
        return
    is_json = fmt in JSON_FORMATS
    options = {} if is_json else csv_options(path, fmt, [*str_cols, *list_cols])
    shape = annif_columns if options is ANNIF_OPTIONS else (lambda chunk: chunk)
    with open_table_bytes(path) as f:
        if is_json and _is_json_array(f):
            allow_json_array(f)
            yield from _array_chunks(f, chunk_rows, str_cols, path)
            return
        if _is_json_document(path, fmt):
            allow_json_array(f)
            yield from _document_chunks(f, chunk_rows, str_cols, path)
            return
        if is_json:
            dtype = {c: "object" for c in str_cols}  # as written: a list of paragraphs stays one
            reader = pd.read_json(
                f, lines=True, dtype=dtype, convert_axes=False, chunksize=chunk_rows
            )
        else:
            reader = pd.read_csv(f, **options, chunksize=chunk_rows)
        if chunk_rows is None:  # pandas returned the whole table, not a reader
            whole = _checked_chunk(shape(reader), 0, path)
            yield _as_strings(whole, str_cols) if is_json else whole
            return
        with reader:
            chunks = _numbered(reader, shape, path)
            if is_json:
                chunks = (_as_strings(c, str_cols) for c in _keeping_fields(chunks))
            yield from chunks


def _is_json_array(f: io.BufferedReader) -> bool:
    """Whether a JSON file holds one array (of records) rather than JSON Lines."""
    return f.peek(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _array_chunks(
    f: io.BufferedReader, chunk_rows: int | None, str_cols: list[str], path: Path
) -> Iterator[pd.DataFrame]:
    """A JSON array of records, read whole, in chunks of `chunk_rows` rows."""
    dtype = {c: "object" for c in str_cols}
    table = pd.read_json(f, orient="records", dtype=dtype, convert_axes=False)
    yield from _whole_table_chunks(table, chunk_rows, str_cols, path)


def _whole_table_chunks(
    table: pd.DataFrame, chunk_rows: int | None, str_cols: list[str], path: Path
) -> Iterator[pd.DataFrame]:
    """A table read whole (a JSON array or document), in chunks of `chunk_rows` rows."""
    step = chunk_rows or max(len(table), 1)
    for start in range(0, max(len(table), 1), step):
        chunk = _checked_chunk(table.iloc[start : start + step].copy(), start, path)
        yield _as_strings(chunk, str_cols)


def _line_chunks(path: Path, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """A .txt file: a `text` per line (blank lines skipped), and in fastText's form, where
    `__label__name` words on a line are its labels, a `labels` column of lists."""
    with io.TextIOWrapper(open_table_bytes(path), encoding="utf-8") as f:
        lines = (line.strip() for line in f)
        texts = (line for line in lines if line)
        chunks = iter(lambda: list(islice(texts, chunk_rows)), [])
        first = next(chunks, [])
        labelled = any(LABEL_PREFIX in line for line in first)
        start = 0
        for chunk in chain([first], chunks):
            table = pd.DataFrame([_text_and_labels(line, labelled) for line in chunk])
            yield _checked_chunk(
                table.reindex(columns=["text", "labels"][: 1 + labelled]), start, path
            )
            start += len(chunk)


def _text_and_labels(line: str, labelled: bool) -> dict:
    if not labelled:
        return {"text": line}
    words = line.split()
    labels = [w[len(LABEL_PREFIX) :] for w in words if w.startswith(LABEL_PREFIX)]
    return {"text": " ".join(w for w in words if not w.startswith(LABEL_PREFIX)), "labels": labels}


def holds_json_lines(path: str | Path) -> bool:
    """Whether a JSON or JSON Lines file holds JSON Lines (one object a line), as readers that
    take nothing else need; not an array, nor one document."""
    path = Path(path)
    with open_table_bytes(path) as f:
        if _is_json_array(f):
            return False
    return not _is_json_document(path, table_format(path))


def _is_json_document(path: Path, fmt: str) -> bool:
    """Whether a `.json` file (not an array) is one JSON document rather than JSON Lines."""
    return fmt == ".json" and not _starts_with_object_lines(path)


def _starts_with_object_lines(path: Path) -> bool:
    """Whether a `.json` file that is not an array holds JSON Lines: a first line that is one
    whole object, and more lines after it (else it is one JSON document)."""
    with open_table_bytes(path) as f:
        try:
            lines = list(islice((line for line in f if line.strip()), 2))
            return len(lines) == 2 and isinstance(json.loads(lines[0]), dict)
        except (DataError, ValueError):  # a line past the limit, or not JSON on its own
            return False


def _document_chunks(
    f: io.BufferedReader, chunk_rows: int | None, str_cols: list[str], path: Path
) -> Iterator[pd.DataFrame]:
    """One JSON document, read whole: an object whose one list of objects holds the records
    (`{"articles": [...]}`, as BioASQ writes them), else the object is one record (see
    `_records`)."""
    document = json.loads(f.read().decode("utf-8"))
    if not isinstance(document, dict):
        raise DataError(f"{path.name}: holds a JSON {type(document).__name__}, not objects")
    yield from _whole_table_chunks(
        pd.DataFrame(_records(document, str_cols)), chunk_rows, str_cols, path
    )


def _records(document: dict, str_cols: list[str]) -> list:
    """A JSON document's records: its one list of objects that has any (or its one list, empty),
    else the document itself as one record ({} holds none). A document that has a text or id
    column itself is one record: an Annif document's `subjects` are not rows."""
    if set(document) & set(str_cols):
        return [document]
    lists = [v for v in document.values() if isinstance(v, list) and _all_objects(v)]
    filled = [v for v in lists if v]
    if len(filled) == 1:
        return filled[0]
    if not filled and len(lists) == 1:
        return []
    return [document] if document else []


def _all_objects(values: list) -> bool:
    return all(isinstance(v, dict) for v in values)


def _as_strings(chunk: pd.DataFrame, str_cols: list[str]) -> pd.DataFrame:
    """`str_cols` as text (ids keep their digits, a number in a text column is its text); a
    cell holding a list (of paragraphs) or a mapping is kept as it is."""
    for col in set(str_cols) & set(chunk.columns):
        chunk[col] = chunk[col].map(_as_text)
    return chunk


def _as_text(value: object) -> object:
    if isinstance(value, list | dict | np.ndarray) or pd.isna(value):
        return value
    return str(value)


def _numbered(
    reader: Iterable[pd.DataFrame], shape: Callable[[pd.DataFrame], pd.DataFrame], path: Path
) -> Iterator[pd.DataFrame]:
    start = 0
    for chunk in reader:
        yield _checked_chunk(shape(chunk), start, path)
        start += len(chunk)


def _keeping_fields(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """JSON Lines chunks with every field an earlier chunk had: a chunk whose lines all leave
    out a field (a document without a title) has it empty, not missing."""
    fields: list[str] = []
    for chunk in chunks:
        fields += [c for c in chunk.columns if c not in fields]
        yield chunk.reindex(columns=fields)


def _iter_parquet_parts(
    root: Path, parts: list[Path], chunk_rows: int | None, str_cols: list[str]
) -> Iterator[pd.DataFrame]:
    """The parts' rows as one table, numbered from the first part's first row, with the
    partition columns of their folders; chunks do not span parts (`chunk_rows` None: the whole
    table, one chunk)."""
    if chunk_rows is None:
        whole = [_partitioned(next(_iter_parquet(p, None, str_cols)), p, root) for p in parts]
        yield pd.concat(whole, ignore_index=True)
        return
    start = 0
    for part in parts:
        for chunk in _iter_parquet(part, chunk_rows, str_cols, start):
            start += len(chunk)
            yield _partitioned(chunk, part, root)


def _partitioned(chunk: pd.DataFrame, part: Path, root: Path) -> pd.DataFrame:
    """A part's chunk with the columns its folders' names give (`year=2020`), as strings."""
    for name, value in partition_values(part, root).items():
        if name not in chunk.columns:
            chunk[name] = None if value == HIVE_MISSING else value
    return chunk


def _iter_parquet(
    path: Path, chunk_rows: int | None, str_cols: list[str], start: int = 0
) -> Iterator[pd.DataFrame]:
    file = pq.ParquetFile(path)
    check_parquet_row_sizes(file.metadata, path)
    batches = [file.read()] if chunk_rows is None else file.iter_batches(batch_size=chunk_rows)
    names = class_names(file.schema_arrow)
    for batch in batches:
        yield _arrow_chunk(batch, start, str_cols, names, path)
        start += batch.num_rows


def _iter_arrow(
    path: Path, files: list[Path], chunk_rows: int | None, str_cols: list[str]
) -> Iterator[pd.DataFrame]:
    """Arrow files (a `datasets` folder's, in order) as one memory-mapped table, in chunks."""
    table = pa.concat_tables([_arrow_file(file) for file in files])
    names = class_names(table.schema)
    step = chunk_rows or max(table.num_rows, 1)
    for start in range(0, max(table.num_rows, 1), step):
        yield _arrow_chunk(table.slice(start, step), start, str_cols, names, path)


def _arrow_file(path: Path) -> pa.Table:
    if not path.is_file():
        raise DataError(f"{path.parent.name}: its file {path.name} is missing")
    return arrow_table(path)


def _arrow_chunk(
    batch: pa.Table | pa.RecordBatch,
    start: int,
    str_cols: list[str],
    names: dict[str, list[str]],
    path: Path,
) -> pd.DataFrame:
    """Rows of Arrow data as a checked chunk: ids and texts as strings, class numbers as names."""
    batch.validate(full=True)  # a damaged file's strings may not be UTF-8: fail here
    chunk = with_class_names(_checked_chunk(batch.to_pandas(), start, path), names)
    return _as_strings(chunk, str_cols)


def _checked_chunk(chunk: pd.DataFrame, start: int, path: Path) -> pd.DataFrame:
    """Number the rows from `start`, make the column names unique strings, and give a
    `metadata` column of mappings (Annif's JSON Lines) a column per field."""
    chunk = flatten_metadata(chunk)
    chunk.index = pd.RangeIndex(start, start + len(chunk))
    chunk.columns = [str(c) for c in chunk.columns]
    twice = chunk.columns[chunk.columns.duplicated()]
    if len(twice):
        raise DataError(f"{path.name}: column {quoted(twice[0])} appears more than once")
    return chunk
