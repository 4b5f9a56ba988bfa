"""Property-based fuzzing of the table readers (hypothesis).

Random tables, written in every format, compression, encoding, delimiter and quoting, go through
the loaders of train (`load_examples` with 0/1 columns or a list column), evaluate
(`load_examples` with the model's labels), predict (`iter_table` + `table_rows`, as
`predict_file` reads) and inspect (`profile_table`). Each case loads what was written, or raises
an MlabelError whose message is one line starting with the file name and naming the row and
column where they apply; no other exception escapes. A second property throws damaged and
malformed files (mutated bytes, duplicate and empty headers, cut archives) at every loader.

The `ci` profile (tests/conftest.py) runs a few hundred examples per test; `--hypothesis-profile
long` many more (bench/fuzz.py). The number of examples run is printed at the end of the module.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import itertools
import json
import lzma
import math
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import mlabel.reports.profile as profile_module  # noqa: E402
import mlabel.tablefile as tablefile  # noqa: E402
from mlabel.data import LONG_SHARE, id_spellings, join_texts, load_examples  # noqa: E402
from mlabel.errors import MlabelError  # noqa: E402
from mlabel.predict import table_rows  # noqa: E402
from mlabel.tables import iter_table  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no positive example:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*the model does not know:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*are not labels of the model:UserWarning"),
]
LINE_LIMIT = 64 * 1024  # MAX_LINE_BYTES while fuzzing, so that huge fields cross it cheaply
RUNS: Counter[str] = Counter()  # examples run per test, printed when the module ends
FILES = itertools.count()
BOM = b"\xef\xbb\xbf"
# label cells: what the loaders accept as 1 or 0 (value -> 1/0), and what they refuse (None)
LABEL_CELLS = [0, 1, 0.0, 1.0, True, False, "0", "1", "1.0", "true", "False"]
BAD_LABEL_CELLS = [None, math.nan, -1, 2, 0.5, "", "yes", "nan", "2"]
TEXT_WORDS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0}


# ---------------------------------------------------------------- tables and how they are written


@dataclass
class Table:
    """A generated table: its columns (name -> cells) and what each column is for."""

    columns: dict[str, list]
    id_col: str | None
    text_cols: list[str]
    label_cols: list[str] = field(default_factory=list)  # 0/1 columns
    list_col: str | None = None  # a column of label-name lists

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def labels_in_file(self) -> list[str]:
        """The 0/1 columns in the file's order: the labels when none are named."""
        return [c for c in self.columns if c in self.label_cols]


@dataclass
class Layout:
    """How a table is written to a file."""

    fmt: str  # csv, tsv, jsonl, json, parquet
    compression: str  # "", .gz, .bz2, .xz, .zip
    encoding: str  # utf-8, utf-8-sig, latin-1, utf-16
    delimiter: str
    quoting: int
    line_end: str
    list_form: str  # pipe ("a|b") or literal ("['a', 'b']") for CSV; native elsewhere
    ascii_json: bool


def compress(data: bytes, compression: str, inner: str) -> bytes:
    if compression == ".gz":
        return gzip.compress(data, compresslevel=1)
    if compression == ".bz2":
        return bz2.compress(data, compresslevel=1)
    if compression == ".xz":
        return lzma.compress(data, preset=0)
    if compression == ".zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(inner, data)
        return buf.getvalue()
    return data


def csv_cell(value: object, list_form: str) -> object:
    if isinstance(value, list):
        return "|".join(value) if list_form == "pipe" else repr(value)
    return value


def table_bytes(table: Table, layout: Layout) -> bytes:
    """The uncompressed bytes of a CSV/TSV/JSONL table."""
    names = list(table.columns)
    rows = list(zip(*table.columns.values()))
    if layout.fmt == "jsonl":
        lines = [
            json.dumps(dict(zip(names, row)), ensure_ascii=layout.ascii_json) + "\n" for row in rows
        ]
        text = "".join(lines)
    elif layout.fmt == "json":  # an array of records
        text = json.dumps([dict(zip(names, row)) for row in rows], ensure_ascii=layout.ascii_json)
    else:
        buf = io.StringIO()
        quoting = layout.quoting
        if layout.line_end == "\n" and any("\r" in str(v) for row in rows for v in row):
            quoting = csv.QUOTE_ALL  # csv quotes a lone "\r" only when "\r" ends its lines
        writer = csv.writer(
            buf, delimiter=layout.delimiter, quoting=quoting, lineterminator=layout.line_end
        )
        writer.writerow(names)
        writer.writerows([[csv_cell(v, layout.list_form) for v in row] for row in rows])
        text = buf.getvalue()
    return text.encode(layout.encoding)


def arrow_column(cells: list) -> pa.Array:
    """A Parquet column: its natural type, or strings when the cells mix types."""
    try:
        return pa.array(cells)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if c is None else str(c) for c in cells], pa.string())


def write(table: Table, layout: Layout, folder: Path) -> tuple[Path, bytes | None]:
    """The file, and its bytes as the reader sees them (uncompressed; None for Parquet)."""
    path = folder / f"t{next(FILES)}.{layout.fmt}{layout.compression}"
    if layout.fmt == "parquet":
        arrays = [arrow_column(cells) for cells in table.columns.values()]
        pq.write_table(pa.Table.from_arrays(arrays, names=list(table.columns)), path)
        return path, None
    raw = table_bytes(table, layout)
    path.write_bytes(compress(raw, layout.compression, f"t.{layout.fmt}"))
    return path, raw


# ---------------------------------------------------------------- strategies

NAME_CHARS = st.characters(
    categories=["L", "N"], include_characters=" _-.'\"()#é中", exclude_characters=",;\t|:"
)
names = st.text(NAME_CHARS, min_size=1, max_size=8).filter(
    lambda n: n.lower() != "id" and n.strip() == n
)
TEXT_CHARS = st.characters(
    codec="utf-8",
    exclude_categories=["Cs"],
    include_characters=",;\t|\"'\r\n\x00\x0b\x1f\ufeff\u2028 ",
)
plain_text = st.text(TEXT_CHARS, max_size=12)
tricky_text = st.sampled_from(["NA", "None", "null", "nan", "N/A", "007", "1e5", "#x", "  ", ""])
huge_text = st.builds(
    lambda ch, n: ch * n, st.sampled_from(["a", "é", "\n", ","]), st.sampled_from([5000, 70000])
)
text_cell = st.one_of(plain_text, plain_text, plain_text, tricky_text, st.none())
label_name = st.one_of(
    st.text(
        st.characters(categories=["L", "N"], include_characters=" _-.é"), min_size=1, max_size=6
    ).filter(lambda n: n.strip() == n),
    st.sampled_from(["NA", "None", "nan", "007", "3", "1.5", "True"]),
)


@st.composite
def tables(draw, labels: str = "columns") -> Table:
    """A table with text columns, maybe an id, and 0/1 label columns or one list column."""
    n = draw(st.integers(1, 7))
    col_names = draw(st.lists(names, min_size=5, max_size=5, unique_by=str.lower))
    id_col = draw(st.sampled_from([None, "ID", "id", "Id"]))
    text_cols = col_names[: draw(st.integers(1, 2))]
    columns: dict[str, list] = {}
    if id_col:
        ids = draw(st.lists(st.one_of(plain_text, tricky_text), min_size=n, max_size=n))
        columns[id_col] = ids
    for c in text_cols:
        columns[c] = draw(st.lists(text_cell, min_size=n, max_size=n))
    if draw(st.integers(0, 9)) == 0:  # one huge field, over the line limit or not
        cells = columns[draw(st.sampled_from(text_cols))]
        cells[draw(st.integers(0, n - 1))] = draw(huge_text)
    table = Table(columns, id_col, text_cols)
    if labels == "columns":
        for c in col_names[2 : 2 + draw(st.integers(1, 3))]:
            good = st.sampled_from(LABEL_CELLS)
            cells = st.one_of(good, good, good, good, good, st.sampled_from(BAD_LABEL_CELLS))
            columns[c] = draw(st.lists(cells, min_size=n, max_size=n))
            table.label_cols.append(c)
        if len(table.label_cols) == 1:  # a lone column of words is read as label names
            columns[table.label_cols[0]][0] = draw(st.sampled_from(LABEL_CELLS))  # (test_data)
    else:
        vocab = draw(st.lists(label_name, min_size=1, max_size=4, unique=True))
        cell = st.one_of(st.lists(st.sampled_from(vocab), max_size=3, unique=True), st.none())
        table.list_col = col_names[4]
        columns[table.list_col] = draw(st.lists(cell, min_size=n, max_size=n))
    if draw(st.booleans()):  # column order should not matter
        order = draw(st.permutations(list(columns)))
        table.columns = {c: columns[c] for c in order}
    return table


@st.composite
def layouts(draw) -> Layout:
    fmt = draw(st.sampled_from(["csv", "csv", "tsv", "jsonl", "jsonl", "json", "parquet"]))
    compression = (
        "" if fmt == "parquet" else draw(st.sampled_from(["", "", ".gz", ".bz2", ".xz", ".zip"]))
    )
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    delimiter = "\t" if fmt == "tsv" else draw(st.sampled_from([",", ",", ";", "\t", "|"]))
    return Layout(
        fmt=fmt,
        compression=compression,
        encoding=encoding,
        delimiter=delimiter,
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])),
        line_end=draw(st.sampled_from(["\n", "\r\n"])),
        list_form=draw(st.sampled_from(["pipe", "literal"])),
        ascii_json=draw(st.booleans()),
    )


# ---------------------------------------------------------------- what the loaders should do


class Expected(Exception):
    """The error a loader should raise: a regex its message matches."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


def encodable(table: Table, layout: Layout) -> bool:
    try:
        table_bytes(table, layout)
    except (UnicodeEncodeError, csv.Error):
        return False
    return True


def parquet_errors(path: Path) -> list[str]:
    """Rows that average over the line limit, uncompressed, are refused."""
    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    big = any(g.num_rows and g.total_byte_size / g.num_rows > LINE_LIMIT for g in groups)
    return [r"rows 1-\d+ hold \d+ MiB each, uncompressed; refusing"] if big else []


def read_errors(raw: bytes, layout: Layout) -> list[str]:
    """Patterns of the errors that reading the bytes may raise (a file that is not UTF-8, an
    overlong line): a reader raises one of them; [] when the bytes read cleanly."""
    raw = raw.removeprefix(BOM)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:  # where_not_utf8 names the first bad byte
        line = raw[: err.start].count(b"\n") + 1
        errors = [rf"not UTF-8 text \(line {line} of the file, byte 0x{raw[err.start]:02x};"]
    else:
        errors = []
    long = [i for i, line in enumerate(raw.split(b"\n"), 1) if len(line) > LINE_LIMIT]
    # which of the two a reader meets first depends on how far it has read ahead
    return errors + ([rf"line {long[0]} of the file is longer than"] if long else [])


def same_text(table: Table, layout: Layout) -> bool:
    """Whether the file holds the table's own text (latin-1 that is all ASCII does)."""
    return layout.encoding.startswith("utf-8") or table_bytes(table, layout).isascii()


def cell_text(value: object) -> str:
    return "" if value is None else str(value).strip()


def expected_texts(table: Table) -> list[str]:
    return [
        "\n".join(t for t in (cell_text(v) for v in row) if t)
        for row in zip(*(table.columns[c] for c in table.text_cols))
    ]


def empty_rows(table: Table) -> list[int]:
    return [i + 1 for i, t in enumerate(expected_texts(table)) if not t]


def label_value(value: object, layout: Layout) -> int | None:
    """1/0 for a cell the loaders take as a label value; None for one they refuse."""
    if layout.fmt in ("csv", "tsv") and not isinstance(value, str):
        value = "" if value is None else str(value)  # CSV holds text
    if isinstance(value, str):
        return TEXT_WORDS.get(value.strip().lower())
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value) if value in (0, 1) else None


def label_list(cell: list | None) -> list[str]:
    return list(cell or [])


def check_ids_and_texts(table: Table) -> list[str]:
    """The ids load_examples should return; raises Expected for a bad id or an empty text."""
    n = table.n_rows
    if table.id_col:
        ids = table.columns[table.id_col]
        blank = [i for i, v in enumerate(ids) if not cell_text(v)]
        if blank:
            raise Expected(rf"row {blank[0] + 1}: column '{table.id_col}' is empty")
    if empty_rows(table):
        raise Expected(rf"row\(s\) with empty or missing text in .*: row {empty_rows(table)[0]}\b")
    return list(table.columns[table.id_col]) if table.id_col else [str(i) for i in range(n)]


def one_row_per_id(table: Table, ids: list[str], y: np.ndarray) -> tuple:
    """(ids, texts, y) with rows that share an id and its text as one row carrying all their
    labels, as load_examples reads them; raises Expected when such rows differ in text."""
    texts, first = expected_texts(table), {}
    for i, row_id in enumerate(ids):
        if texts[first.setdefault(row_id, i)] != texts[i]:
            raise Expected(rf"share {re.escape(table.id_col)} .* but not their text")
    keep = list(first.values())
    merged = np.zeros((len(keep), y.shape[1]), dtype=np.float32)
    for i, row_id in enumerate(ids):
        at = keep.index(first[row_id])
        merged[at] = np.maximum(merged[at], y[i])
    return list(first), [texts[i] for i in keep], merged


def one_row_per_text(table: Table, ids: list[str], y: np.ndarray) -> tuple:
    """`one_row_per_id`, and then, without an id column, rows of one label each (from a list
    column) that repeat a text as one row, where LONG_SHARE of the texts gather several."""
    ids, texts, y = one_row_per_id(table, ids, y)
    if table.id_col is not None or (y.sum(axis=1) > 1).any():
        return ids, texts, y
    first = {}
    for i, text in enumerate(texts):
        first.setdefault(text, i)
    merged = np.zeros((len(first), y.shape[1]), dtype=np.float32)
    keep = list(first.values())
    for i, text in enumerate(texts):
        at = keep.index(first[text])
        merged[at] = np.maximum(merged[at], y[i])
    several = int((merged.sum(axis=1) > 1).sum())
    if len(first) == len(texts) or several < LONG_SHARE * len(first):
        return ids, texts, y
    return [ids[i] for i in keep], list(first), merged


def check_label_columns(table: Table, cols: list[str], layout: Layout) -> np.ndarray:
    """The 0/1 matrix for `cols`; raises Expected naming the first bad cell, column by column."""
    y = np.zeros((table.n_rows, len(cols)), dtype=np.float32)
    for j, col in enumerate(cols):
        for i, cell in enumerate(table.columns[col]):
            value = label_value(cell, layout)
            if value is None:
                raise Expected(rf"row {i + 1}: label '{re.escape(col)}' is .*expected 0 or 1")
            y[i, j] = value
    return y


def check_label_lists(table: Table, labels: list[str] | None) -> tuple[list[str], np.ndarray]:
    lists = [label_list(c) for c in table.columns[table.list_col]]
    names = labels if labels is not None else sorted({n for row in lists for n in row})
    if not names:
        raise Expected(rf"column '{re.escape(table.list_col)}' holds no labels at all")
    # labels the model does not know are left out (with a warning)
    y = np.array([[float(n in row) for n in names] for row in lists], dtype=np.float32)
    return names, y.reshape(len(lists), len(names))


# ---------------------------------------------------------------- running a case


def run_case(name: str, path: Path, expected_errors: list[str], load, check) -> None:
    """Load `path`; the result passes `check`, or the error is one line that matches one of
    `expected_errors` (any error message that starts with the file name when it is [None])."""
    RUNS[name] += 1
    try:
        result = load()
    except MlabelError as err:
        message = str(err)
        assert len(message.splitlines()) == 1 and "\r" not in message, message
        assert message.startswith(path.name), message
        if expected_errors != [None]:
            assert any(re.search(p, message) for p in expected_errors), (expected_errors, message)
        return
    assert expected_errors in ([], [None]), (expected_errors, "loaded", result)
    if check is not None:
        check(result)


def expectations(table: Table, layout: Layout, read: list[str], oracle) -> tuple[list, object]:
    """The errors a loader may raise (`read`: those of reading the file) and the value it
    returns, from `oracle(table)`."""
    errors = list(read)
    if errors:
        return errors, None
    if not same_text(table, layout):
        return [None], None  # latin-1 bytes that happen to be UTF-8: any one-line error will do
    try:
        return [], oracle(table)
    except Expected as err:
        return [err.pattern], None


@pytest.fixture(scope="module", autouse=True)
def fuzz_setup(tmp_path_factory, request):
    """A small line limit and a stub tokenizer while fuzzing; the example count at the end."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tablefile, "MAX_LINE_BYTES", LINE_LIMIT)
        # a JSON array's lines too (its own, larger limit: test_huge_inputs)
        mp.setattr(tablefile, "MAX_ARRAY_BYTES", LINE_LIMIT)
        mp.setattr(profile_module, "_load_tokenizer", lambda model: StubTokenizer())
        yield tmp_path_factory.mktemp("fuzz")
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if RUNS and reporter is not None and capture is not None:
        runs = ", ".join(f"{k} {v}" for k, v in sorted(RUNS.items()))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nfuzz examples run: {sum(RUNS.values())} ({runs})")


class StubTokenizer:
    """Words plus two special tokens: keeps `profile_table` fast."""

    model_max_length = 512
    unk_token_id = None  # like byte-level tokenizers: nothing is unknown

    def __call__(self, texts: list[str], **_) -> dict:
        return {"input_ids": [[0] * (len(t.split()) + 2) for t in texts]}


def fresh_case(table: Table, layout: Layout, folder: Path) -> tuple[Path, list[str]]:
    """The table written to a new file, and the errors reading it may raise."""
    hypothesis.assume(encodable(table, layout))
    path, raw = write(table, layout, folder)
    return path, parquet_errors(path) if raw is None else read_errors(raw, layout)


# ---------------------------------------------------------------- the properties


@given(table=tables("columns"), layout=layouts(), choose=st.sampled_from(["all", "named"]))
def test_train_reads_label_columns(fuzz_setup, table, layout, choose):
    path, read = fresh_case(table, layout, fuzz_setup)
    label_cols = None if choose == "all" else table.label_cols

    def oracle(t: Table):
        ids = check_ids_and_texts(t)
        return one_row_per_id(
            t, ids, check_label_columns(t, label_cols or t.labels_in_file, layout)
        )

    errors, want = expectations(table, layout, read, oracle)

    def check(ex):
        assert (ex.ids, ex.texts) == want[:2]
        assert ex.labels == (label_cols or table.labels_in_file)
        assert np.array_equal(ex.y, want[2])

    load = lambda: load_examples(path, table.text_cols, label_cols=label_cols)  # noqa: E731
    run_case("train", path, errors, load, check if want else None)
    path.unlink()


@given(table=tables("lists"), layout=layouts())
def test_train_reads_a_label_list_column(fuzz_setup, table, layout):
    path, read = fresh_case(table, layout, fuzz_setup)

    def oracle(t: Table):
        ids = check_ids_and_texts(t)
        names, y = check_label_lists(t, None)
        return names, one_row_per_text(t, ids, y)

    errors, want = expectations(table, layout, read, oracle)

    def check(ex):
        assert (ex.ids, ex.texts) == want[1][:2]
        assert ex.labels == want[0] and np.array_equal(ex.y, want[1][2])

    load = lambda: load_examples(path, table.text_cols, labels_col=table.list_col)  # noqa: E731
    run_case("train-lists", path, errors, load, check if want else None)
    path.unlink()


@given(table=st.one_of(tables("columns"), tables("lists")), layout=layouts(), data=st.data())
def test_evaluate_reads_the_model_labels(fuzz_setup, table, layout, data):
    path, read = fresh_case(table, layout, fuzz_setup)
    if table.list_col:
        used = sorted({n for c in table.columns[table.list_col] for n in label_list(c)})
        model_labels = data.draw(st.lists(st.sampled_from(used + ["zz"]), min_size=1, unique=True))
        columns = dict(labels_col=table.list_col)
    else:
        model_labels = data.draw(st.permutations(table.label_cols))
        columns = {}

    def oracle(t: Table):
        ids = check_ids_and_texts(t)
        if t.list_col:
            return one_row_per_text(t, ids, check_label_lists(t, model_labels)[1])
        return one_row_per_id(t, ids, check_label_columns(t, model_labels, layout))

    errors, want = expectations(table, layout, read, oracle)

    def check(ex):
        assert ex.labels == model_labels and np.array_equal(ex.y, want[2])

    load = lambda: load_examples(path, table.text_cols, labels=model_labels, **columns)  # noqa: E731
    run_case("evaluate", path, errors, load, check if want else None)
    path.unlink()


@given(
    table=st.one_of(tables("columns"), tables("lists")),
    layout=layouts(),
    chunk_rows=st.integers(1, 4),
)
def test_predict_streams_texts_and_ids(fuzz_setup, table, layout, chunk_rows):
    path, read = fresh_case(table, layout, fuzz_setup)
    str_cols = [*id_spellings("ID"), *table.text_cols]

    def predict_read() -> tuple[list[str], list[str]]:  # what predict_file reads
        ids, texts = [], []
        for chunk in iter_table(path, chunk_rows=chunk_rows, str_cols=str_cols):
            _, chunk_ids, chunk_texts = table_rows(chunk, table.text_cols, "ID", path.name)
            ids, texts = ids + chunk_ids, texts + chunk_texts
        return ids, texts

    def oracle(t: Table):  # a row without text is read as "" (predict gives it no label)
        return list(t.columns[t.id_col]) if t.id_col else [str(i) for i in range(t.n_rows)]

    errors, want = expectations(table, layout, read, oracle)

    def check(result):
        assert result == (want, expected_texts(table))

    run_case("predict", path, errors, predict_read, check if want is not None else None)
    path.unlink()


@given(table=st.one_of(tables("columns"), tables("lists")), layout=layouts())
def test_inspect_profiles_the_table(fuzz_setup, table, layout):
    path, read = fresh_case(table, layout, fuzz_setup)
    columns = dict(labels_col=table.list_col) if table.list_col else {}

    def oracle(t: Table):
        if t.list_col:
            return check_label_lists(t, None)
        return t.labels_in_file, check_label_columns(t, t.labels_in_file, layout)

    errors, want = expectations(table, layout, read, oracle)

    def check(p):
        texts = expected_texts(table)
        assert p.n_rows == table.n_rows and p.texts == texts
        assert p.empty.tolist() == [not t for t in texts]
        assert p.labels == want[0] and np.array_equal(p.y, want[1])
        assert not p.unread.any() and not p.unread_pieces  # a tokenizer with no unknown token

    load = lambda: profile_module.profile_table(path, table.text_cols, **columns)  # noqa: E731
    run_case("inspect", path, errors, load, check if want else None)
    path.unlink()


# ---------------------------------------------------------------- damaged and malformed files

header_cell = st.sampled_from(["", "text", "text", "ID", "a", "a", "a.1", "Unnamed: 0", '"', " "])


@st.composite
def malformed_files(draw, folder: Path) -> Path:
    """A well-formed table with some bytes changed, cut short or added, or a CSV with duplicate
    and empty header cells and ragged rows."""
    layout = draw(layouts())
    if draw(st.booleans()):
        header = draw(st.lists(header_cell, min_size=1, max_size=5))
        rows = draw(
            st.lists(
                st.lists(st.one_of(plain_text, st.sampled_from(LABEL_CELLS)), max_size=6),
                max_size=5,
            )
        )
        buf = io.StringIO()
        csv.writer(buf, delimiter=layout.delimiter).writerows([header, *rows])
        data = compress(buf.getvalue().encode("utf-8"), layout.compression, "t.csv")
        path = folder / f"t{next(FILES)}.csv{layout.compression}"
        path.write_bytes(data)
        return path
    table = draw(st.one_of(tables("columns"), tables("lists")))
    hypothesis.assume(encodable(table, layout))
    path, _ = write(table, layout, folder)
    data = bytearray(path.read_bytes())
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and data:
            data[where] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[where:]
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
    path.write_bytes(bytes(data))
    return path


@given(
    data=st.data(),
    loader=st.sampled_from(["train", "train-lists", "evaluate", "predict", "inspect"]),
)
def test_damaged_files_load_or_give_one_line_errors(fuzz_setup, data, loader):
    path = data.draw(malformed_files(fuzz_setup))
    loads = {
        "train": lambda: load_examples(path, ["text"]),
        "train-lists": lambda: load_examples(path, ["text"], labels_col="a"),
        "evaluate": lambda: load_examples(path, ["text"], labels=["a"]),
        "predict": lambda: [table_rows(c, ["text"], "ID", path.name) for c in iter_table(path, 2)],
        "inspect": lambda: profile_module.profile_table(path, ["text"]),
    }
    run_case("damaged", path, [None], loads[loader], None)
    path.unlink()


# ---------------------------------------------------------------- defects the fuzzer found


def one_line_error(path: Path, load) -> str:
    with pytest.raises(MlabelError) as err:
        load()
    message = str(err.value)
    assert message.startswith(path.name) and len(message.splitlines()) == 1, message
    return message


CSV = b"ID,text,a\n1,hello,1\n2,world,0\n"


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_damaged_compressed_file_is_a_data_error(tmp_path, suffix, damage):
    path = tmp_path / f"t.csv{suffix}"
    data = compress(CSV, suffix, "t.csv")
    path.write_bytes(data[: len(data) // 2] if damage == "cut" else b"garbage" + data[7:])
    message = one_line_error(path, lambda: load_examples(path, ["text"]))
    assert "damaged compressed file" in message or "cannot read" in message


def test_zip_with_two_tables_is_refused(tmp_path):
    path = tmp_path / "t.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", CSV)
        archive.writestr("b.csv", CSV)
    assert "holds 2 files" in one_line_error(path, lambda: load_examples(path, ["text"]))


def test_zip_with_an_unknown_compression_method_is_a_data_error(tmp_path):
    path = tmp_path / "t.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("t.csv", CSV)
    data = bytearray(path.read_bytes())
    method = data.index(b"PK\x01\x02") + 10  # in the central directory, which zipfile trusts
    data[method : method + 2] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    message = one_line_error(path, lambda: load_examples(path, ["text"]))
    assert "damaged compressed file (That compression method is not supported)" in message


def test_zip_of_a_version_zipfile_cannot_read_is_a_data_error(tmp_path):
    """Found by the damaged-files property: zipfile refuses to open it at all."""
    path = tmp_path / "t.json.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("t.json", '[{"text": "a", "x": 1}]')
    data = bytearray(path.read_bytes())
    data[data.index(b"PK\x01\x02") + 6] = 84  # the version needed to extract: 8.4
    path.write_bytes(bytes(data))
    message = one_line_error(path, lambda: load_examples(path, ["text"]))
    assert message == "t.json.zip: damaged compressed file (zip file version 8.4)"


def test_text_and_ids_spelled_like_missing_values_are_kept(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("ID,text,a\nNA,None,1\nnull,N/A,0\n")
    ex = load_examples(path, ["text"])
    assert ex.ids == ["NA", "null"] and ex.texts == ["None", "N/A"]


def test_utf8_bom_before_json_lines_is_dropped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(BOM + b'{"text": "x", "a": 1}\n')
    assert load_examples(path, ["text"]).texts == ["x"]


@pytest.mark.parametrize(
    "name, content",
    [("t.jsonl", '{"text": "x", "l": [["a", "b"]]}\n'), ("t.csv", 'text,l\nx,"[[1, 2]]"\n')],
)
def test_nested_label_list_names_row_and_column(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    message = one_line_error(path, lambda: load_examples(path, ["text"], labels_col="l"))
    assert "row 1: column 'l' is" in message


def test_parquet_with_a_column_twice_is_a_data_error(tmp_path):
    path = tmp_path / "t.parquet"
    arrays = [pa.array(["x"]), pa.array(["y"])]
    pq.write_table(pa.Table.from_arrays(arrays, names=["text", "text"]), path)
    message = one_line_error(path, lambda: load_examples(path, ["text"], require_labels=False))
    assert "column 'text' appears more than once" in message


def test_parquet_strings_that_are_not_utf8_are_a_data_error(tmp_path):
    path = tmp_path / "t.parquet"
    offsets, data = (
        pa.py_buffer(np.array([0, 2], dtype=np.int32).tobytes()),
        pa.py_buffer(b"\xff\xfe"),
    )
    text = pa.Array.from_buffers(pa.string(), 1, [None, offsets, data])  # not validated
    pq.write_table(pa.table({"ID": ["1"], "text": text}), path)
    message = one_line_error(path, lambda: load_examples(path, ["text"], require_labels=False))
    assert "cannot read as parquet" in message


def test_names_with_line_breaks_keep_the_message_on_one_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('ID,"te\nxt",a\n1,x,1\n')
    assert "'te\\nxt'" in one_line_error(path, lambda: load_examples(path, ["text"]))
    path.write_text('text,l\nx,"a\nb"\n')
    with pytest.warns(UserWarning, match="does not know") as caught:
        load_examples(path, ["text"], labels_col="l", labels=["a"])
    (message,) = [str(w.message) for w in caught if "does not know" in str(w.message)]
    assert "'a\\nb' (row 1)" in message and len(message.splitlines()) == 1


def test_true_and_false_mixed_with_numbers_are_label_values(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,a,b\nx,True,1\ny,0,false\n")
    assert load_examples(path, ["text"]).y.tolist() == [[1, 1], [0, 0]]


def test_empty_text_in_a_later_chunk_names_its_row_in_the_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("ID,text\n1,a\n2,b\n3,c\n4,\n")
    message = one_line_error(
        path, lambda: [join_texts(c, ["text"], path.name) for c in iter_table(path, 2)]
    )
    assert message.endswith("row 4")


@pytest.mark.parametrize(
    "name, content",
    [
        ("t.csv", "text,l\nx,3\ny,\nz,007\nw,NA\n"),
        ("t.jsonl", '{"text": "x", "l": 3}\n{"text": "y", "l": null}\n{"text": "z", "l": 7}\n'),
    ],
)
def test_numeric_label_names_keep_their_spelling(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    ex = load_examples(path, ["text"], labels_col="l")
    assert ex.labels == (["007", "3", "NA"] if name == "t.csv" else ["3", "7"])
