"""Compressed and huge inputs through `predict_file`: decompression bombs (a few KB to MB that
expand to GiBs) and a CSV with one enormous field are refused with a one-line DataError naming
the file and line, a bomb of ordinary rows streams, and peak memory stays bounded (measured in a
subprocess, whose peak RSS is its own). bench/huge_inputs.py runs the 2 GB field.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

MiB = 2**20
PEAK_RSS_LIMIT_MB = 1536
BLOCK = 64 * MiB  # one compressed member; bombs repeat it

# The child runs predict_file with a stub predictor (no model: the reading is what is measured)
# on each file, stopping after its `max_rows` rows, and prints one JSON line per file with the
# outcome and the peak RSS while reading it (Linux resets the peak through /proc/self/clear_refs).
CHILD = r"""
import json, resource, sys, time
import numpy as np
from mlabel.errors import MlabelError
from mlabel.predict import predict_file

class Enough(Exception):
    pass

class Scores:
    def __init__(self, n):
        self.n = n
    def values(self, proba):
        return np.zeros((self.n, 1), dtype=np.float32)

class StubPredictor:
    text_cols, labels, id_col = ["text"], ["a"], "ID"
    def __init__(self, max_rows):
        self.rows, self.max_rows = 0, max_rows
    def run(self, texts, *args):
        self.rows += len(texts)
        if self.rows >= self.max_rows:
            raise Enough
        return Scores(len(texts))

def status_mb(key):
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

for case in json.loads(sys.argv[1]):
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # no reset: the peak is the process's so far, which bounds this case's
    base = status_mb("VmRSS")
    predictor, start = StubPredictor(case["max_rows"]), time.perf_counter()
    try:
        predict_file(predictor, case["src"], case["src"] + ".out.csv")
        outcome = "done"
    except Enough:
        outcome = "streamed"
    except MlabelError as err:
        outcome = "error: " + str(err)
    seconds = time.perf_counter() - start
    peak = status_mb("VmHWM")
    print(json.dumps(dict(outcome=outcome, rows=predictor.rows, peak_mb=peak, base_mb=base,
                          seconds=seconds)))
"""


def run_predict(cases: list[tuple[Path, int]]) -> list[dict]:
    """predict_file on each (file, max_rows) in one fresh interpreter: outcome, rows read, peak
    RSS and seconds of each."""
    spec = json.dumps([dict(src=str(src), max_rows=max_rows) for src, max_rows in cases])
    done = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(cases) :]]


def repeated(path: Path, head: bytes, block: bytes, times: int, opener: Callable) -> None:
    """`head` then `block` `times` times, each its own compressed member (gzip, xz and bzip2
    read concatenated members as one stream): GiBs of input for the price of one block."""
    with opener(path, "wb") as f:
        f.write(head)
    member = path.read_bytes()
    with opener(path, "wb") as f:
        f.write(block)
    packed = path.read_bytes()
    path.write_bytes(member + packed * times)


def zip_bomb(path: Path, head: bytes, block: bytes, times: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("t.csv", "w", force_zip64=True) as f:
            f.write(head)
            for _ in range(times):
                f.write(block)


OPENERS = {
    ".gz": lambda p, m: gzip.open(p, m, compresslevel=9),
    ".xz": lambda p, m: lzma.open(p, m, preset=0),
    ".bz2": lambda p, m: bz2.open(p, m, compresslevel=1),
}


def bomb(folder: Path, suffix: str, block: bytes, gib: int) -> Path:
    """A `.csv<suffix>` of an "ID,text" header and then `gib` GiB of `block`."""
    path = folder / f"bomb.csv{suffix}"
    times = gib * 1024 * MiB // len(block)
    head = b"ID,text\n1,"
    if suffix == ".zip":
        zip_bomb(path, head, block, times)
    else:
        repeated(path, head, block, times, OPENERS[suffix])
    return path


BOMBS = [(".gz", 4), (".xz", 4), (".bz2", 4), (".zip", 1)]
ALL_ROWS = 10**12


def huge_field_csv(folder: Path, mib: int) -> Path:
    """Rows 1 and 3 short, row 2 one field of `mib` MiB."""
    path = folder / f"field{mib}.csv"
    with path.open("wb") as f:
        f.write(b"ID,text\n1,short\n2,")
        for _ in range(mib // 8):
            f.write(b"x" * 8 * MiB)
        f.write(b"\n3,short\n")
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """Every case below, run once in one subprocess (starting one costs seconds)."""
    folder = tmp_path_factory.mktemp("huge")
    cases = {
        f"bomb{suffix}": (bomb(folder, suffix, b"0" * BLOCK, gib), ALL_ROWS)
        for suffix, gib in BOMBS
    }
    row = b"7,an ordinary short text\n"
    rows = folder / "rows.csv.gz"
    repeated(rows, b"ID,text\n", row * (BLOCK // len(row)), 64, OPENERS[".gz"])  # 4 GiB
    cases["rows"] = (rows, 300_000)
    cases["field"] = (huge_field_csv(folder, 200), ALL_ROWS)
    long = folder / "long.jsonl"
    long.write_text(json.dumps({"ID": "1", "text": "word " * 2 * MiB}) + "\n")  # 10 MiB
    cases["long"] = (long, ALL_ROWS)
    sizes = {name: src.stat().st_size for name, (src, _) in cases.items()}
    results = run_predict(list(cases.values()))
    return {name: dict(r, size=sizes[name]) for name, r in zip(cases, results)}


@pytest.mark.parametrize("suffix", [s for s, _ in BOMBS])
def test_decompression_bomb_is_refused_in_bounded_memory(outcomes, suffix):
    result = outcomes[f"bomb{suffix}"]
    gib = dict(BOMBS)[suffix]
    assert gib * 1024 * MiB / result["size"] > 200  # GiBs packed into a few KB or MB
    assert result["outcome"].startswith(f"error: bomb.csv{suffix}: line 2 of the file is longer")
    assert result["peak_mb"] < PEAK_RSS_LIMIT_MB, result


def test_bomb_of_ordinary_rows_streams_in_bounded_memory(outcomes):
    result = outcomes["rows"]
    assert result["outcome"] == "streamed" and result["rows"] >= 300_000, result
    assert result["peak_mb"] < PEAK_RSS_LIMIT_MB, result


def test_csv_with_a_200_mb_field_is_refused_in_bounded_memory(outcomes):
    result = outcomes["field"]
    assert result["outcome"].startswith("error: field200.csv: line 3 of the file is longer than")
    assert "\n" not in result["outcome"] and result["peak_mb"] < PEAK_RSS_LIMIT_MB, result


def test_long_field_under_the_limit_is_read(outcomes):
    assert outcomes["long"]["outcome"] == "done" and outcomes["long"]["rows"] == 1


def test_not_utf8_byte_deep_in_a_big_file_is_located(tmp_path):
    """The bad byte is found past the first 1 MiB block; an "é" split across blocks is fine."""
    from mlabel.data import load_examples
    from mlabel.errors import DataError

    path = tmp_path / "big.csv.gz"
    rows = "".join(f"{i},é{'x' * 50}\n" for i in range(25_000))  # 1.4 MB
    path.write_bytes(gzip.compress(f"ID,text\n{rows}".encode() + b"25000,caf\xe9\n"))
    where = r"big.csv.gz: not UTF-8 text \(line 25002 of the file, byte 0xe9;"
    with pytest.raises(DataError, match=where):
        load_examples(path, ["text"], require_labels=False)


def test_parquet_rows_of_many_mib_are_refused(tmp_path, monkeypatch):
    """A Parquet bomb: one row that packs into KB and unpacks to more than a line may hold."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import mlabel.tablefile
    from mlabel.errors import DataError
    from mlabel.tables import iter_table

    monkeypatch.setattr(mlabel.tablefile, "MAX_LINE_BYTES", MiB)
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"ID": ["1"], "text": ["0" * 4 * MiB]}), path, compression="zstd")
    assert path.stat().st_size < 10_000
    with pytest.raises(DataError, match=r"bomb.parquet: rows 1-1 hold 4 MiB each, uncompressed"):
        next(iter_table(path, 5000))


def test_a_json_array_on_one_line_is_read_past_the_line_limit(tmp_path, monkeypatch):
    """pandas' `to_json(orient="records")` writes a whole table on one line: a 3 MiB array
    over a 1 MiB line limit is read (up to MAX_ARRAY_BYTES), a JSON Lines line that long is not."""
    import pandas as pd

    import mlabel.tablefile
    from mlabel.data import load_examples
    from mlabel.errors import DataError

    monkeypatch.setattr(mlabel.tablefile, "MAX_LINE_BYTES", MiB)
    rows = pd.DataFrame({"ID": [str(i) for i in range(300)], "text": ["word " * 2000] * 300})
    rows.to_json(tmp_path / "t.json", orient="records")
    assert (tmp_path / "t.json").read_bytes().count(b"\n") == 0
    assert len(load_examples(tmp_path / "t.json", ["text"], require_labels=False)) == 300
    monkeypatch.setattr(mlabel.tablefile, "MAX_ARRAY_BYTES", 2 * MiB)
    with pytest.raises(DataError, match=r"t.json: line 1 of the file is longer than 2 MiB"):
        load_examples(tmp_path / "t.json", ["text"], require_labels=False)
    (tmp_path / "t.jsonl").write_text(json.dumps({"ID": "1", "text": "word " * MiB}) + "\n")
    with pytest.raises(DataError, match=r"t.jsonl: line 1 of the file is longer than 1 MiB"):
        load_examples(tmp_path / "t.jsonl", ["text"], require_labels=False)
