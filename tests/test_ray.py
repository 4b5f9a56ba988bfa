"""Batch prediction on Ray Data gives the plain engine's rows, value for value."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from mlabel import ray_predict
from mlabel.cli import main
from mlabel.errors import DataError
from mlabel.predict import load_predictor, predict_file
from mlabel.ray_predict import _write, input_format

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module (startup is the slow part). Logical CPUs: one per
    actor plus one for the read tasks; they do not pin threads, so 3 is fine on 2 cores."""
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def table(arxiv, tmp_path_factory):
    path = tmp_path_factory.mktemp("ray-in") / "abstracts.csv"
    arxiv.iloc[:300].to_csv(path, index=False)
    return path


def test_ray_labels_match_plain_engine(ray_session, trained_tiny, table, tmp_path):
    plain, out = tmp_path / "plain.csv", tmp_path / "ray.csv"
    predict_file(load_predictor(trained_tiny), table, plain)
    argv = ["predict", str(trained_tiny), str(table), "-o", str(out), "--engine", "ray"]
    assert main([*argv, "--num-actors", "2", "--chunk-rows", "64"]) == 0
    expected, got = (pd.read_csv(p, dtype={"ID": str}) for p in (plain, out))
    assert len(got) == 300
    pd.testing.assert_frame_equal(got, expected)  # same order, columns, dtypes and 0/1 values


def test_actors_read_the_columns_they_are_given(trained_tiny, table, tmp_path, monkeypatch):
    """--text-cols and --id-col reach the dataset reader and each actor; by default the
    model's own (the actor runs here without Ray: it is a plain callable)."""
    from mlabel import ray_predict

    names = {"ID": "doc", "TITLE": "title", "ABSTRACT": "body"}
    batch = pd.read_csv(table, dtype={"ID": str}).iloc[:12].rename(columns=names)
    actor = ray_predict.PredictActor(
        str(trained_tiny), "torch", "doc", ["title", "body"], True, None, 1, "t.csv", "cpu"
    )
    predictor = load_predictor(trained_tiny, "torch")
    predictor.text_cols = ["title", "body"]
    expected = predictor.predict_proba(
        (batch["title"].str.strip() + "\n" + batch["body"].str.strip()).tolist()
    )
    got = actor(batch)
    assert got["doc"].tolist() == batch["doc"].tolist()
    pd.testing.assert_frame_equal(
        got[predictor.labels], pd.DataFrame(expected, columns=predictor.labels)
    )
    seen = {}
    monkeypatch.setattr(ray_predict, "_start", lambda *args: None)
    monkeypatch.setattr(ray_predict, "_check_local_columns", lambda *args: None)  # doc, body
    monkeypatch.setattr(ray_predict, "_write", lambda *args: 0)
    monkeypatch.setattr(
        ray_predict,
        "_predictions",
        lambda ray, model, src, actor_args, *rest: seen.update(actor_args),
    )
    ray_predict.predict_ray(trained_tiny, str(table), str(tmp_path / "x.csv"))
    assert seen["id_col"] == "ID" and seen["text_cols"] == ["TITLE", "ABSTRACT"]
    ray_predict.predict_ray(
        trained_tiny, str(table), str(tmp_path / "x.csv"), id_col="doc", text_cols=["body"]
    )
    assert seen["id_col"] == "doc" and seen["text_cols"] == ["body"]


def test_gpu_actors_are_refused_where_they_could_not_run(
    ray_session, trained_tiny, table, tmp_path, capsys
):
    argv = [
        "predict",
        str(trained_tiny),
        str(table),
        "-o",
        str(tmp_path / "x.csv"),
        "--engine",
        "ray",
    ]
    for engine in ("onnx-int8", "openvino"):
        assert main([*argv, "--actor-gpus", "0.5", "--actor-engine", engine]) == 2
        assert f"engine {engine!r} runs on the CPU" in capsys.readouterr().err
    assert main([*argv, "--actor-gpus", "1"]) == 2  # the local instance has no GPU
    assert "this Ray cluster has none" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_gpu_actors_ask_ray_for_gpus_and_run_on_cuda(
    ray_session, trained_tiny, table, tmp_path, monkeypatch
):
    """What predict_ray asks of Ray Data for GPU actors (a GPU path no test machine here runs)."""
    from mlabel import ray_predict

    seen, requested = {}, {}

    class Dataset:
        def repartition(self, **kwargs):
            return self

        def map_batches(self, fn, **kwargs):
            requested.update(kwargs)

    def predictions(ray, model_dir, src, actor_args, num_actors, batch, gpus):
        seen.update(actor_args, gpus=gpus)
        original(ray, model_dir, src, actor_args, num_actors, batch, gpus)

    original = ray_predict._predictions
    monkeypatch.setattr(ray_predict, "read_dataset", lambda *args: Dataset())

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3, "GPU": 1})
    monkeypatch.setattr(ray_predict, "_predictions", predictions)
    monkeypatch.setattr(ray_predict, "_write", lambda *args: 0)
    ray_predict.predict_ray(trained_tiny, str(table), str(tmp_path / "x.csv"), gpus_per_actor=0.5)
    assert seen["gpus"] == 0.5 and seen["device"] == "cuda" and requested["num_gpus"] == 0.5
    ray_predict.predict_ray(trained_tiny, str(table), str(tmp_path / "x.csv"))
    assert seen["gpus"] == 0 and seen["device"] == "cpu"


def test_json_lines_read_as_the_plain_engine_reads_them(ray_session, trained_tiny, table, tmp_path):
    """JSON Lines: ids as written ("007"), a text cell holding a list of paragraphs, a row
    without text; the rows equal the plain engine's. A JSON array is refused before Ray starts."""
    frame = pd.read_csv(table, dtype={"ID": str}).iloc[:40]
    frame["ID"] = [f"{i:03d}" for i in range(40)]
    frame["ABSTRACT"] = [[text] for text in frame["ABSTRACT"]]
    frame.at[3, "ABSTRACT"] = ["First paragraph.", "Second one."]
    frame.loc[5, ["TITLE", "ABSTRACT"]] = None
    src, plain, out = tmp_path / "in.jsonl", tmp_path / "plain.csv", tmp_path / "ray.csv"
    frame.to_json(src, orient="records", lines=True)
    predict_file(load_predictor(trained_tiny, "torch"), src, plain, proba=True)
    argv = ["predict", str(trained_tiny), str(src), "-o", str(out), "--engine", "ray", "--proba"]
    assert main([*argv, "--actor-engine", "torch", "--chunk-rows", "16"]) == 0
    expected, got = (pd.read_csv(p, dtype={"ID": str}) for p in (plain, out))
    assert got["ID"].iloc[:2].tolist() == ["000", "001"] and got.iloc[5, 1:].isna().all()
    pd.testing.assert_frame_equal(got, expected, atol=1e-6)
    frame.at[7, "ABSTRACT"] = "text where the column holds lists"
    frame.to_json(src, orient="records", lines=True)
    with pytest.raises(DataError, match="in.jsonl: cannot read as JSON Lines .*one type per col"):
        ray_predict.predict_ray(trained_tiny, str(src), str(out))
    array = tmp_path / "array.json"
    frame.to_json(array, orient="records")
    with pytest.raises(DataError, match="array.json: one JSON array or document; --engine ray"):
        ray_predict.predict_ray(trained_tiny, str(array), str(out))


def test_folder_output_is_parquet_parts(ray_session, tmp_path):
    frame = pd.DataFrame(
        {"ID": [f"r{i}" for i in range(10)], "Physics": [i % 2 for i in range(10)]}
    )
    out = tmp_path / "parts"
    assert _write(ray.data.from_pandas(frame).repartition(3), str(out), "ID", ["Physics"]) == 10
    assert out.is_dir() and input_format(str(out)) == "parquet"
    got = pd.read_parquet(out).sort_values("ID", key=lambda c: c.str[1:].astype(int))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), frame)


def test_input_format_of_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "part-0.parquet").touch()
    (tmp_path / "a" / "_SUCCESS").touch()
    assert input_format(str(tmp_path / "a")) == "parquet"
    assert input_format("s3://bucket/x.csv.gz") == "csv"
    assert input_format("gs://bucket/x.jsonl.gz") == input_format("x.json") == "json"
    (tmp_path / "a" / "more.csv").touch()
    with pytest.raises(DataError, match=r"files of more than one kind \(csv, parquet\)"):
        input_format(str(tmp_path / "a"))
    (tmp_path / "lines.txt").touch()  # a file of another kind: no traceback from listing it
    (tmp_path / "empty").mkdir()
    for other in (tmp_path / "lines.txt", tmp_path / "empty"):
        with pytest.raises(DataError, match="--engine ray reads CSV, JSON Lines or Parquet"):
            input_format(str(other))


def test_missing_ray_is_a_clear_error(trained_tiny, table, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    argv = ["predict", str(trained_tiny), str(table), "-o", str(tmp_path / "x.csv")]
    assert main([*argv, "--engine", "ray"]) == 2
    assert "pip install 'mlabel[ray]'" in capsys.readouterr().err


def test_an_actor_gives_a_row_without_text_no_label(trained_tiny, table):
    """As predict_file does: the batch is not refused, the row is not scored."""
    from mlabel import ray_predict

    batch = pd.read_csv(table, dtype={"ID": str}).iloc[:6]
    batch.loc[2, ["TITLE", "ABSTRACT"]] = None
    args = ("torch", "ID", ["TITLE", "ABSTRACT"])
    probs = ray_predict.PredictActor(str(trained_tiny), *args, True, None, 1, "t.csv", "cpu")(batch)
    assert probs.iloc[2, 1:].isna().all() and probs.drop(2).iloc[:, 1:].notna().all().all()
    hits = ray_predict.PredictActor(str(trained_tiny), *args, False, 0.0, 1, "t.csv", "cpu")(batch)
    assert hits.iloc[2, 1:].sum() == 0 and (hits.drop(2).iloc[:, 1:].sum(axis=1) > 0).all()
