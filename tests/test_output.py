"""Prediction tables written chunk by chunk, and streamed prediction of whole files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import RecordingBar

from mlabel.cli import main
from mlabel.decision import DecisionRule
from mlabel.errors import DataError, UsageError
from mlabel.output import RowsProgress, TableWriter
from mlabel.predict import load_predictor, predict_file
from mlabel.tables import read_table

LABELS = ["b", "a, with comma", "c"]
OLD_RESULTS = b"ID,Physics\n1,1\n"


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


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_failure_keeps_the_old_table_and_leaves_no_half_one(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    write_chunks(path, np.ones((4, 3)), chunk=2)
    old = path.read_bytes()
    with pytest.raises(RuntimeError), TableWriter(path) as writer:
        writer.write(["1"], "ID", LABELS, np.zeros((1, 3)))
        raise RuntimeError("chunk 2 failed")
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == [path.name]
    with pytest.raises(RuntimeError), TableWriter(tmp_path / f"new{suffix}"):
        raise RuntimeError("failed before the first chunk")
    assert os.listdir(tmp_path) == [path.name]


def test_no_chunk_at_all_replaces_the_old_table_with_an_empty_file(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("last week's results")
    with TableWriter(path):
        pass
    assert path.read_bytes() == b""


def test_failed_predict_keeps_the_existing_output(trained_tiny, small_csv, tmp_path, capsys):
    results = tmp_path / "results.csv"
    results.write_bytes(OLD_RESULTS)
    pd.read_csv(small_csv).drop(columns="ABSTRACT").head(5).to_csv(tmp_path / "bad.csv")
    code = main(["predict", str(trained_tiny), str(tmp_path / "bad.csv"), "-o", str(results)])
    assert code == 2 and "ABSTRACT" in capsys.readouterr().err
    assert results.read_bytes() == OLD_RESULTS
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "results.csv"]


# Prepended to a script: its first chunk is written, then it waits until killed.
STALL_AFTER_FIRST_CHUNK = """
import sys
from mlabel.output import TableWriter

write = TableWriter.write

def write_then_stall(self, *args):
    write(self, *args)
    print("first chunk written", flush=True)
    sys.stdin.read()

TableWriter.write = write_then_stall
"""
PREDICT = "from mlabel.cli import main\nmain(sys.argv[1:])\n"
WRITE_CHUNKS = """
import numpy as np
with TableWriter(sys.argv[1]) as writer:
    for i in range(10):
        writer.write([str(i)], "ID", ["a"], np.ones((1, 1)))
"""


def kill_after_first_chunk(out: Path, script: str, *args: str) -> None:
    """Run a script that writes `out` and SIGKILL it (no handler runs) mid-way through."""
    command = [sys.executable, "-c", STALL_AFTER_FIRST_CHUNK + script, *args]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout.readline() == "first chunk written\n"
        assert len(os.listdir(out.parent)) == 2  # the new table is being written beside the old
        proc.kill()


def test_predict_killed_mid_way_keeps_the_old_output(trained_tiny, small_csv, tmp_path):
    out = tmp_path / "results.csv"
    out.write_bytes(OLD_RESULTS)
    argv = ["predict", str(trained_tiny), str(small_csv), "-o", str(out), "--chunk-rows", "50"]
    kill_after_first_chunk(out, PREDICT, *argv)
    assert out.read_bytes() == OLD_RESULTS
    assert main(argv) == 0  # run again: it completes and clears what the killed run left
    assert len(read_table(out)) == len(pd.read_csv(small_csv))
    assert os.listdir(tmp_path) == [out.name]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_writer_killed_mid_way_keeps_the_old_table(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    write_chunks(out, np.ones((4, 3)), chunk=2)
    old = out.read_bytes()
    kill_after_first_chunk(out, WRITE_CHUNKS, str(out))
    assert out.read_bytes() == old


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


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_long_chunks_make_one_table(tmp_path, suffix):
    path = tmp_path / f"long{suffix}"
    with TableWriter(path) as writer:
        writer.write_long("ID", np.array([]), np.array([]), np.array([]))  # a text without labels
        writer.write_long("ID", np.array(["x1", "x1"]), np.array(["a", "c"]), np.array([0.9, 0.4]))
        writer.write_long("ID", np.array(["x2"]), np.array(["b"]), np.array([0.7], np.float32))
    table = read_table(path)
    assert list(table.columns) == ["ID", "label", "score"]
    assert table["ID"].tolist() == ["x1", "x1", "x2"]
    assert table["label"].tolist() == ["a", "c", "b"]
    np.testing.assert_allclose(table["score"], [0.9, 0.4, 0.7], atol=1e-6)


def test_long_layout_matches_the_wide_probabilities(trained_tiny, small_csv, tmp_path):
    predictor = load_predictor(trained_tiny)
    pd.read_csv(small_csv).head(20).to_csv(tmp_path / "in.csv", index=False)
    predict_file(predictor, tmp_path / "in.csv", tmp_path / "wide.csv", proba=True)
    predict_file(predictor, tmp_path / "in.csv", tmp_path / "hits.csv")
    wide = pd.read_csv(tmp_path / "wide.csv", dtype={"ID": str}).set_index("ID")
    hits = pd.read_csv(tmp_path / "hits.csv", dtype={"ID": str}).set_index("ID")
    top2 = DecisionRule(top_k=2)
    predict_file(
        predictor, tmp_path / "in.csv", tmp_path / "top2.csv", threshold=0.0, rule=top2,
        layout="long", chunk_rows=7,
    )  # fmt: skip
    long = pd.read_csv(tmp_path / "top2.csv", dtype={"ID": str})
    assert long.groupby("ID").size().eq(2).all() and long["ID"].nunique() == 20
    for item_id, group in long.groupby("ID", sort=False):
        best = wide.loc[item_id].sort_values(ascending=False)
        assert group["label"].tolist() == best.index[:2].tolist()  # best first
        np.testing.assert_allclose(group["score"], best.iloc[:2], atol=1e-5)
    # Without a cap: exactly the labels that are on in the wide 0/1 table.
    predict_file(predictor, tmp_path / "in.csv", tmp_path / "on.csv", layout="long")
    on = pd.read_csv(tmp_path / "on.csv", dtype={"ID": str})
    assert set(zip(on["ID"], on["label"])) == {
        (i, label) for i, row in hits.iterrows() for label in hits.columns if row[label]
    }
    with pytest.raises(UsageError, match="--proba does not apply to --format long"):
        predict_file(predictor, tmp_path / "in.csv", tmp_path / "x.csv", proba=True, layout="long")


def test_rows_progress_appears_only_once_a_chunk_is_done(tmp_path, monkeypatch):
    """An error in the first chunk stays one line: no bar is drawn before it."""
    import mlabel.output

    monkeypatch.setattr(mlabel.output, "tqdm", RecordingBar)
    RecordingBar.made.clear()
    with pytest.raises(DataError), RowsProgress(tmp_path / "in.csv", "predict"):
        raise DataError("in.csv row 1: bad")
    assert RecordingBar.made == []
    with RowsProgress(tmp_path / "in.csv", "predict") as progress:
        progress.update(3)
    (bar,) = RecordingBar.made
    assert bar.updates == [3] and bar.closed and bar.total is None
