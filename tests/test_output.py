"""Prediction tables written chunk by chunk, and streamed prediction of whole files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlabel.data import DataError, read_table
from mlabel.output import TableWriter
from mlabel.predict import load_predictor, predict_file

LABELS = ["b", "a, with comma", "c"]


def write_chunks(path, values: np.ndarray, chunk: int) -> None:
    ids = [f"0{i}" for i in range(len(values))]
    with TableWriter(path) as writer:
        for start in range(0, len(values), chunk):
            part = slice(start, start + chunk)
            writer.write(ids[part], "ID", LABELS, values[part])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("kind", ["int", "float"])
def test_chunks_make_one_table(tmp_path, suffix, kind):
    rng = np.random.default_rng(0)
    values = rng.random((7, 3)).astype(np.float32)
    values = (values > 0.5).astype(np.int8) if kind == "int" else values
    path = tmp_path / f"out{suffix}"
    path.write_text("stale")  # an old file is replaced, not appended to
    write_chunks(path, values, chunk=3)
    table = read_table(path)
    assert list(table.columns) == ["ID", *LABELS]
    assert table["ID"].tolist() == [f"0{i}" for i in range(7)]
    np.testing.assert_allclose(table[LABELS].to_numpy(), values, atol=1e-6)


def test_unknown_output_format(tmp_path):
    with pytest.raises(DataError, match=r"out.txt: output must end in .csv, .jsonl, .parquet"):
        TableWriter(tmp_path / "out.txt")


def test_failure_leaves_no_half_table(tmp_path):
    path = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError), TableWriter(path) as writer:
        writer.write(["1"], "ID", LABELS, np.zeros((1, 3)))
        raise RuntimeError("chunk 2 failed")
    assert not path.exists()


def test_predict_file_streams_like_one_chunk(trained_tiny, small_csv, tmp_path):
    predictor = load_predictor(trained_tiny)
    rows = pd.read_csv(small_csv).head(25)
    rows.to_csv(tmp_path / "in.csv", index=False)
    one = predict_file(predictor, tmp_path / "in.csv", tmp_path / "one.csv", proba=True)
    many = predict_file(
        predictor, tmp_path / "in.csv", tmp_path / "many.csv", proba=True, chunk_rows=7
    )
    assert one == many == 25
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "many.csv"), atol=1e-5
    )
