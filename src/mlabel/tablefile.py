"""The bytes of a table file: decompressed (.gz, .bz2, .xz, .zip), without a UTF-8 byte order
mark, and with a limit on the length of a line (and on the size of a Parquet row), so that a
decompression bomb or one runaway field is refused instead of read whole into memory; and how
pandas should read a CSV's delimiter and missing values (and Annif's headerless TSV corpus)."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import re
import zipfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote

import pandas as pd

from mlabel.errors import DataError

if TYPE_CHECKING:
    from pyarrow.parquet import FileMetaData

MAX_LINE_BYTES = 64 * 2**20  # a longer line in a CSV/TSV/JSONL file is refused, not read
# a JSON array is read whole, and pandas and `datasets` write it on one line: it may be this long
MAX_ARRAY_BYTES = 2**30
# what pandas reads as a missing value in CSV (its default `na_values`)
_MISSING = "#N/A|#N/A N/A|#NA|-1.#IND|-1.#QNAN|-NaN|-nan|1.#IND|1.#QNAN|<NA>|N/A|NA|NULL|NaN"
PANDAS_MISSING = ("", *_MISSING.split("|"), "None", "n/a", "nan", "null")
HIVE_MISSING = "__HIVE_DEFAULT_PARTITION__"  # a partition folder's value for a missing cell
ANNIF_URIS = re.compile(r"\s*(?:<[^<>\s]+>\s*)+")  # Annif's subjects of a document: "<uri> <uri>"
# the columns of Annif's short-text corpus, a TSV without header: text TAB subjects
ANNIF_COLUMNS = ["text", "subject_uris"]
# Annif splits each line at its first tab and the rest at any whitespace (tabs too), and quotes
# are text: pandas reads each line whole (no line holds the unit separator), annif_columns splits
ANNIF_OPTIONS = dict(
    sep="\x1f",
    header=None,
    names=["line"],
    dtype="str",
    encoding="utf-8",
    quoting=csv.QUOTE_NONE,
    keep_default_na=False,
)


class _LineGuard(io.RawIOBase):
    """A table's bytes as they are read, refusing a line longer than MAX_LINE_BYTES: a
    decompression bomb or one runaway field would otherwise be read whole into memory.
    A leading UTF-8 byte order mark is dropped."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        super().__init__()
        self._raw, self._name, self.limit = raw, name, MAX_LINE_BYTES
        self._line, self._run, self._at_start = 1, 0, True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        # a read no longer than the limit holds no whole line over it: checking the line that
        # runs on from the last read is enough
        size = min(len(buffer), self.limit)
        data = self._raw.read(size)
        if self._at_start:
            self._at_start = False
            if data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8) :] or self._raw.read(size)
        self._count_lines(data)
        buffer[: len(data)] = data
        return len(data)

    def _count_lines(self, data: bytes) -> None:
        first_end = data.find(b"\n")
        run = self._run + (len(data) if first_end < 0 else first_end)
        if run > self.limit:
            raise DataError(
                f"{self._name}: line {self._line} of the file is longer than "
                f"{self.limit / 2**20:g} MiB; refusing to read it (no text to classify is "
                "this long: a damaged file or a decompression bomb?)"
            )
        if first_end < 0:
            self._run = run
        else:
            self._line += data.count(b"\n")
            self._run = len(data) - data.rfind(b"\n") - 1

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_table_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed (.gz, .bz2, .xz, .zip), read through a _LineGuard."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        raw = _open_zip_member(path)
    else:
        raw = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)(path, "rb")
    return io.BufferedReader(_LineGuard(raw, path.name), buffer_size=2**20)


def allow_json_array(f: io.BufferedReader) -> None:
    """Let `f` (from open_table_bytes) hold a JSON array on one line, up to MAX_ARRAY_BYTES."""
    f.raw.limit = MAX_ARRAY_BYTES


def _open_zip_member(path: Path) -> IO[bytes]:
    """The one table in a .zip (macOS metadata folders aside)."""
    try:
        archive = zipfile.ZipFile(path)
    except NotImplementedError as err:  # a version zipfile does not read: "zip file version 8.4"
        raise DataError(f"{path.name}: damaged compressed file ({err})") from None
    with archive:
        members = [
            m
            for m in archive.infolist()
            if not m.is_dir() and not m.filename.startswith("__MACOSX/")
        ]
        if len(members) != 1:
            raise DataError(
                f"{path.name}: a .zip must hold one table, this one holds {len(members)} files"
            )
        if members[0].flag_bits & 0x1:
            raise DataError(f"{path.name}: the table in the .zip is encrypted")
        try:
            return archive.open(members[0])
        except (NotImplementedError, RuntimeError) as err:  # a method zipfile cannot unpack
            raise DataError(f"{path.name}: damaged compressed file ({err})") from None


def csv_options(path: Path, fmt: str, str_cols: list[str]) -> dict:
    """read_csv's delimiter and missing-value settings: pandas' usual missing values ("NA",
    "null", ...) everywhere but in `str_cols`, where an id "NA" or a text "None" is meant."""
    if fmt == ".tsv" and is_annif_corpus(path):
        return ANNIF_OPTIONS
    sep = "\t" if fmt == ".tsv" else csv_delimiter(path)
    with open_table_bytes(path) as f:
        names = pd.read_csv(f, sep=sep, nrows=0, encoding="utf-8").columns
    missing = {c: PANDAS_MISSING for c in names if c not in str_cols}
    return dict(
        sep=sep,
        dtype={c: "str" for c in str_cols},
        encoding="utf-8",
        keep_default_na=False,
        na_values=missing,
    )


def is_annif_corpus(path: Path) -> bool:
    """Whether a TSV file is in Annif's short-text corpus form: no header, each line a text, a
    tab and the document's subject URIs in angle brackets (`<http://...> <http://...>`), or
    none. Judged on the first lines (64 KiB): each subject part a URI list or blank, one a list."""
    subjects = [line.rstrip("\r\n").partition("\t")[2] for line in _first_lines(path)]
    uris = [ANNIF_URIS.fullmatch(s) is not None for s in subjects]
    return any(uris) and all(u or not s.strip() for u, s in zip(uris, subjects))


def annif_columns(lines: pd.DataFrame) -> pd.DataFrame:
    """Lines read with ANNIF_OPTIONS as Annif reads them: the text before the first tab, the
    subjects after it (missing on a line without a tab)."""
    parts = lines["line"].str.partition("\t")
    text, subjects = ANNIF_COLUMNS
    return pd.DataFrame({text: parts[0], subjects: parts[2].where(parts[1] != "")})


def _first_line(path: Path) -> str:
    return _first_lines(path)[0]


def _first_lines(path: Path, size: int = 65536) -> list[str]:
    """The lines in the file's first `size` bytes, a line cut there left out unless it is the
    first."""
    with open_table_bytes(path) as f:
        data = f.read(size)
    lines = data.decode("utf-8", errors="replace").split("\n")
    return lines[:-1] if len(data) == size and len(lines) > 1 else lines


def csv_delimiter(path: Path) -> str:
    """',' unless the header line is split more by ';', tab or '|' (spreadsheets in many
    locales write ';')."""
    header = _first_line(path)
    counts = {d: header.count(d) for d in ",;\t|"}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] > counts[","] else ","


def where_not_utf8(path: Path) -> str:
    """Locate the first undecodable byte, for the error message (reading block by block)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    try:
        with open_table_bytes(path) as f:
            while block := f.read(2**20):
                decoder.decode(block)
                line += block.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as bad:  # bad.object: the block after held-back bytes
        line += bad.object[: bad.start].count(b"\n")
        byte = bad.object[bad.start]
        return f"line {line} of the file, byte 0x{byte:02x}; save the file as UTF-8"
    except (EOFError, OSError, lzma.LZMAError, zlib.error, zipfile.BadZipFile):
        pass  # the bytes cannot all be read back: say what matters without the place
    return "save the file as UTF-8"


def parquet_parts(path: Path) -> list[Path]:
    """The Parquet files of a folder that holds one table in parts (as Ray, Spark and Dask
    write one, and `predict --engine ray -o DIR`), in its subfolders too (Hive partitions,
    `year=2020/`), in name order; files named "_..." or "..." are not parts (as for Arrow);
    [] for anything else."""
    if not path.is_dir():
        return []
    parts = (p for p in path.rglob("*.parquet") if p.is_file())
    return sorted(p for p in parts if not _hidden(p.relative_to(path)))


def _hidden(relative: Path) -> bool:
    return any(name.startswith(("_", ".")) for name in relative.parts)


def partition_values(part: Path, root: Path) -> dict[str, str]:
    """The Hive partition columns of a part, from its folders' names: `year=2020/x.parquet` ->
    {"year": "2020"} (values unquoted as Spark and Arrow escape them)."""
    folders = part.relative_to(root).parts[:-1]
    return dict(
        (unquote(key), unquote(value))
        for key, _, value in (f.partition("=") for f in folders if "=" in f)
    )


def check_parquet_row_sizes(meta: FileMetaData, path: Path) -> None:
    """Refuse a row group whose rows average more than a CSV line may hold, uncompressed: a
    Parquet decompression bomb is one or a few rows of GiBs."""
    limit, start = MAX_LINE_BYTES, 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_rows and group.total_byte_size / group.num_rows > limit:
            raise DataError(
                f"{path.name}: rows {start + 1}-{start + group.num_rows} hold "
                f"{group.total_byte_size / group.num_rows / 2**20:.0f} MiB each, uncompressed; "
                f"refusing to read rows over {limit / 2**20:g} MiB (a decompression bomb?)"
            )
        start += group.num_rows
