"""The prediction engine: order restored after length sorting, empty input, bf16 fallback, streaming."""

from __future__ import annotations

import json
import warnings
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import RecordingBar, tiny_train_settings

import mlabel.engines as engines_mod
from mlabel.decision import DecisionRule
from mlabel.engines import inference_device, pick_engine
from mlabel.errors import ConfigError, ModelError
from mlabel.folder import EngineChoice, ModelInfo
from mlabel.predict import Predictions, Predictor, predict_file


def torch_model(predictor: Predictor) -> torch.nn.Module:
    """The torch model behind a predictor (blended with TF-IDF or not)."""
    scorer = getattr(predictor.scorer, "encoder", predictor.scorer)
    return scorer.logits.model


@pytest.fixture(scope="module")
def texts(small_csv) -> list[str]:
    df = pd.read_csv(small_csv).head(16)
    # Varied lengths, so length sorting really reorders them.
    return [f"{t}\n{a[: 40 + 90 * i]}" for i, (t, a) in enumerate(zip(df.TITLE, df.ABSTRACT))]


def test_order_restored_after_length_sorting(trained_tiny, texts, monkeypatch):
    monkeypatch.setattr(engines_mod, "MAX_TOKENS", 256)  # many small batches
    predictor = Predictor(trained_tiny, "torch")
    together = predictor.predict_proba(texts)
    one_by_one = np.vstack([predictor.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_empty_input(trained_tiny):
    predictor = Predictor(trained_tiny, "torch")
    assert predictor.predict_proba([]).shape == (0, len(predictor.labels))
    assert predictor.predict([]) == []


def test_unknown_engine_is_refused(trained_tiny):
    with pytest.raises(ModelError, match="not one of"):
        Predictor(trained_tiny, "tensorrt")


def test_bf16_falls_back_to_fp32_on_slow_cpus(trained_tiny, monkeypatch):
    monkeypatch.setattr(engines_mod, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no fast bf16"):
        predictor = Predictor(trained_tiny, "bf16", device="cpu")  # a CPU even where a GPU is
    assert predictor.engine == "torch"
    assert Predictor(trained_tiny, "auto", device="cpu").engine == "torch"


def test_bf16_agrees_with_fp32(trained_tiny, texts, monkeypatch):
    monkeypatch.setattr(engines_mod, "cpu_has_fast_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bf16 = Predictor(trained_tiny, "bf16", device="cpu")
    assert bf16.engine == "bf16"
    assert torch_model(bf16).encoder.dtype == torch.bfloat16  # cast once, not autocast per batch
    fp32 = Predictor(trained_tiny, "torch", device="cpu").predict_proba(texts)
    np.testing.assert_allclose(bf16.predict_proba(texts), fp32, atol=0.03)


def test_device_auto_is_the_gpu_for_torch_engines_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert inference_device("auto", "auto") == torch.device("cuda")
    assert inference_device("auto", "bf16") == torch.device("cuda")
    assert inference_device("auto", "onnx-int8") == torch.device("cpu")
    assert inference_device("cpu", "torch") == torch.device("cpu")
    with pytest.raises(ModelError, match="engine 'onnx' runs on the CPU"):
        inference_device("cuda", "onnx")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_device("auto", "auto") == torch.device("cpu")
    with pytest.raises(ModelError, match="no GPU is available"):
        inference_device("cuda:1", "torch")
    with pytest.raises(ModelError, match="is not auto, cpu, cuda or cuda:N"):
        inference_device("gpu", "torch")


def test_auto_engine_on_a_gpu_ignores_the_choice_measured_on_a_cpu(tmp_path, monkeypatch):
    """`mlabel export` records the fastest CPU engine; on a GPU auto runs torch there instead."""
    info = ModelInfo(labels=["a"], thresholds=[0.5], text_cols=["text"], max_len=16)
    info.engine = EngineChoice(choice="onnx-int8")
    for bf16, expected in ((True, "bf16"), (False, "torch")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda b=bf16: b)
        assert pick_engine(tmp_path, info, "auto", torch.device("cuda")) == expected


def test_predictor_runs_on_the_device_it_names(trained_tiny, texts):
    predictor = Predictor(trained_tiny, "torch", device="cpu")
    assert predictor.device == torch.device("cpu")
    assert next(torch_model(predictor).parameters()).device == torch.device("cpu")
    # `auto` is the GPU where there is one: the same model, up to kernel rounding.
    np.testing.assert_allclose(
        predictor.predict_proba(texts),
        Predictor(trained_tiny, "torch").predict_proba(texts),
        atol=1e-5,
    )


def test_tfidf_model_runs_on_the_cpu_and_checks_the_device(small_csv, tmp_path, monkeypatch):
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    cfg = TrainConfig(model="tfidf", text_cols=["TITLE", "ABSTRACT"], val_frac=0.25)
    model_dir = fit_model(cfg, small_csv, tmp_path).model_dir
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Predictor(model_dir).device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="no GPU is available"):
        Predictor(model_dir, device="cuda")


def test_predict_file_chunked_equals_unchunked(trained_tiny, small_csv, tmp_path):
    src = tmp_path / "in.csv"
    pd.read_csv(small_csv).head(40).to_csv(src, index=False)
    predictor = Predictor(trained_tiny, "torch")
    n_small = predict_file(predictor, src, tmp_path / "a.csv", proba=True, chunk_rows=7)
    n_whole = predict_file(predictor, src, tmp_path / "b.csv", proba=True, chunk_rows=10_000)
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert n_small == n_whole == 40 == len(a)
    pd.testing.assert_frame_equal(a, b, atol=1e-5)


def test_rows_without_text_get_no_label_and_a_warning(trained_tiny, small_csv, tmp_path, capsys):
    """A catalogue's records without an abstract no longer stop the whole run (and lose the
    rows done): they get no label, empty probability cells, no long rows, and one warning that
    counts them, rows numbered across chunks."""
    src = tmp_path / "in.csv"
    rows = pd.read_csv(small_csv, dtype={"ID": str}).head(12)
    rows.loc[[1, 9], ["TITLE", "ABSTRACT"]] = None
    rows.to_csv(src, index=False)
    predictor = Predictor(trained_tiny, "torch")
    rule = DecisionRule(None, 1)  # at least one label: not for a row without text
    with pytest.warns(UserWarning, match=r"in.csv: 2 row\(s\) with empty or missing text in "
                      r"TITLE, ABSTRACT got no labels \(row 2, 10\)"):  # fmt: skip
        predict_file(predictor, src, tmp_path / "p.csv", chunk_rows=5, rule=rule)
    hits = pd.read_csv(tmp_path / "p.csv", dtype={"ID": str})
    assert hits["ID"].tolist() == rows["ID"].tolist()
    sums = hits[predictor.labels].sum(axis=1)
    assert (sums.iloc[[1, 9]] == 0).all() and (sums.drop([1, 9]) >= 1).all()
    with pytest.warns(UserWarning):
        predict_file(predictor, src, tmp_path / "q.csv", proba=True, chunk_rows=5)
    probs = pd.read_csv(tmp_path / "q.csv", dtype={"ID": str})[predictor.labels]
    assert probs.iloc[[1, 9]].isna().all().all() and probs.drop([1, 9]).notna().all().all()
    with pytest.warns(UserWarning):
        predict_file(predictor, src, tmp_path / "l.csv", layout="long", rule=rule)
    assert set(pd.read_csv(tmp_path / "l.csv", dtype={"ID": str})["ID"]) == set(
        rows["ID"].drop([1, 9])
    )


@pytest.mark.parametrize("suffix, total", [(".parquet", 40), (".csv", 40), (".json", None)])
def test_predict_file_shows_rows_done(
    trained_tiny, small_csv, tmp_path, monkeypatch, suffix, total
):
    import mlabel.output

    src = tmp_path / f"in{suffix}"
    rows = pd.read_csv(small_csv, dtype={"ID": str}).head(40)
    {".parquet": rows.to_parquet, ".csv": partial(rows.to_csv, index=False)}.get(
        suffix,
        partial(rows.to_json, orient="records"),  # a JSON array: its rows are not counted
    )(src)
    monkeypatch.setattr(mlabel.output, "tqdm", RecordingBar)
    RecordingBar.made.clear()
    predict_file(Predictor(trained_tiny, "torch"), src, tmp_path / "p.csv", chunk_rows=16)
    (bar,) = RecordingBar.made
    assert bar.total == total and bar.updates == [16, 16, 8] and bar.closed
    assert bar.desc == f"predict in{suffix}"


def test_evaluate_scores_in_chunks_under_a_progress_bar(
    trained_tiny, small_csv, tmp_path, monkeypatch
):
    """`evaluate` scores the table as `predict` reads it, CHUNK_ROWS rows at a time, with a bar
    of the rows done out of the table's rows; the figures are those of one call."""
    import mlabel.output
    import mlabel.predict
    from mlabel.evaluation import evaluate

    predictor = Predictor(trained_tiny, "torch")
    whole = evaluate(predictor, small_csv).probs
    monkeypatch.setattr(mlabel.output, "tqdm", RecordingBar)
    monkeypatch.setattr(mlabel.predict, "CHUNK_ROWS", 16)
    RecordingBar.made.clear()
    chunked = evaluate(predictor, small_csv)
    (bar,) = RecordingBar.made
    n = len(chunked.probs)
    assert n > 32 and bar.total == n and bar.updates == [16] * (n // 16) + [n % 16] * (n % 16 > 0)
    assert bar.desc == f"scoring {small_csv.name}" and bar.closed
    np.testing.assert_allclose(chunked.probs, whole, atol=1e-5)


def test_long_rows_are_the_labels_on_best_first():
    probs = np.array([[0.2, 0.9, 0.6], [0.1, 0.3, 0.2]], dtype=np.float32)
    hits = np.array([[1, 1, 1], [0, 0, 0]])
    preds = Predictions(["a", "b", "c"], probs, np.full(3, 0.5), hits)
    ids, labels, scores = preds.long_rows(["x", "y"])
    assert ids.tolist() == ["x", "x", "x"] and labels.tolist() == ["b", "c", "a"]
    np.testing.assert_allclose(scores, [0.9, 0.6, 0.2])


def test_trained_rule_is_stored_used_and_overridden(small_csv, texts, tmp_path):
    from mlabel.classifier import Classifier

    settings = dict(text_cols=["TITLE", "ABSTRACT"], val_frac=0.25, thresholds="global")
    clf = Classifier("tfidf", top_k=2, min_labels=1, **settings).fit(small_csv, out=tmp_path)
    saved = json.loads((clf.model_dir_ / "mlabel.json").read_text())
    assert saved["rule"] == {"top_k": 2, "min_labels": 1}
    assert all(1 <= len(tags) <= 2 for tags in clf.predict(texts, threshold=0.0))
    assert all(len(tags) == 1 for tags in clf.predict(texts, threshold=1.0))
    assert all(len(tags) == 3 for tags in clf.predict(texts, threshold=0.0, top_k=3))
    assert all(len(tags) == 6 for tags in clf.predict(texts, threshold=0.0, top_k=0))  # no cap
    assert not any(clf.predict(texts, threshold=1.0, min_labels=0))
    with pytest.raises(ConfigError, match=r"min_labels \(3\) is above top_k \(2\)"):
        clf.predict(texts, min_labels=3)


def test_a_model_trained_with_spelled_symbols_reads_them_at_prediction(
    tiny_encoder, small_csv, tmp_path
):
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    rows = pd.read_csv(small_csv)
    rows.loc[rows.index[:40], "TITLE"] += " 😂"  # emoji in some training titles
    data = tmp_path / "emoji.csv"
    rows.to_csv(data, index=False)
    settings = tiny_train_settings(tiny_encoder) | {"epochs": 1, "ensemble": None}
    model_dir = fit_model(
        TrainConfig(**settings, spell_symbols=True), data, tmp_path / "a"
    ).model_dir
    assert "joy" in Predictor(model_dir, "torch").scorer.tokenizer.tokenize("so funny 😂")
    plain = fit_model(TrainConfig(**settings), data, tmp_path / "b").model_dir
    assert "[UNK]" in Predictor(plain, "torch").scorer.tokenizer.tokenize("so funny 😂")
