"""Explanations: words and spans, integrated gradients' completeness, TF-IDF coefficients, the CLI,
the server's /explain and the missing extra."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import RecordingBar

from mlabel.cli import main
from mlabel.errors import ExtraMissing
from mlabel.explain import Explainer, tfidf_attribution, word_spans

pytest.importorskip("captum", reason="the explain extra is not installed")

TEXT = "Hyperparameterization of naïve transformers, αβγ-graphs\non x_y lattices."


@pytest.fixture(scope="module")
def explainer(trained_tiny_encoder_only) -> Explainer:
    return Explainer(trained_tiny_encoder_only, n_steps=16)


@pytest.fixture(scope="module")
def tfidf_dir(small_csv, tmp_path_factory):
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    cfg = TrainConfig(model="tfidf", text_cols=["TITLE", "ABSTRACT"], val_frac=0.25)
    return fit_model(cfg, small_csv, tmp_path_factory.mktemp("tfidf")).model_dir


def test_words_cover_the_text_with_their_pieces_merged(explainer):
    [explanation] = explainer.explain([TEXT], labels=["Physics"])[0]
    words = explanation.words
    assert [(w.start, w.end) for w in words] == word_spans(TEXT)
    assert all(TEXT[w.start : w.end] == w.text for w in words)
    assert "".join(w.text for w in words) == "".join(TEXT.split())
    # Words the tokenizer cuts into pieces are one word each, with the pieces' sum.
    pieces = explainer.encoder.tokenizer.tokenize("Hyperparameterization")
    assert len(pieces) > 1 and words[0].text == "Hyperparameterization"
    assert all(w.weight != 0 for w in words if w.text in {"Hyperparameterization", "αβγ"})


def test_integrated_gradients_add_up_to_the_change_in_logit(trained_tiny_encoder_only):
    precise = Explainer(trained_tiny_encoder_only, n_steps=64, batch_size=64)
    member = precise.encoder("Spectral bounds for random walks on expander graphs.", [0, 1])
    change = member.logit - member.logit_base
    total = member.logit_weights.sum(axis=1)
    np.testing.assert_allclose(total, change, rtol=0.05, atol=0.02 * np.abs(change).max())
    assert np.abs(change).max() > 0.05  # a test that could fail: the logits do move


def test_weights_add_up_to_probability_minus_baseline(explainer):
    for e in explainer.explain(["Spectral bounds for random walks on expander graphs."])[0]:
        total = sum(w.weight for w in e.words)
        assert total == pytest.approx(e.probability - e.baseline, abs=0.05 * abs(total) + 2e-3)


def test_tfidf_weight_is_coefficient_times_tfidf(tfidf_dir):
    explainer = Explainer(tfidf_dir)
    model = explainer.tfidf
    term = "graphs"
    index = model.vectorizer_.vocabulary_[term]
    member = tfidf_attribution(model, "Graphs", [0, 3])
    value = model.vectorizer_.transform(["Graphs"])[0, index]
    np.testing.assert_allclose(member.logit_weights[:, 0], value * model.coef_[[0, 3], index])
    # Several words and bigrams: the weights add up to logit - intercept exactly.
    text = "Random graphs and random walks, graphs again."
    member = tfidf_attribution(model, text, [0, 1, 2])
    logit = model.decision_function([text])[0, [0, 1, 2]]
    np.testing.assert_allclose(member.logit_weights.sum(axis=1), logit - model.intercept_[:3])
    [e] = explainer.explain([text], labels=["Mathematics"])[0]
    assert sum(w.weight for w in e.words) == pytest.approx(e.probability - e.baseline, abs=1e-5)


def test_blend_weighs_both_members(trained_tiny):
    explainer = Explainer(trained_tiny, n_steps=16)
    assert explainer.encoder is not None and explainer.tfidf is not None
    [e] = explainer.explain(["Spectral bounds on expander graphs."], labels=["Mathematics"])[0]
    total = sum(w.weight for w in e.words)
    assert total == pytest.approx(e.probability - e.baseline, abs=0.05 * abs(total) + 2e-3)


def test_unknown_label_is_one_line(explainer):
    from mlabel.errors import UsageError

    with pytest.raises(UsageError, match="'Poetry' is not one of the model's labels"):
        explainer.explain(["text"], labels=["Poetry"])


def test_cli_prints_words_and_writes_a_table(
    trained_tiny, small_csv, tmp_path, capsys, monkeypatch
):
    import mlabel.output

    monkeypatch.setattr(mlabel.output, "tqdm", RecordingBar)
    RecordingBar.made.clear()
    model = str(trained_tiny)
    argv = ["explain", model, "--text", TEXT, "--label", "Physics", "--top", "3", "--steps", "8"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("  Physics: probability")
    assert len(out) == 5 and all(line.lstrip()[0] in "+−" for line in out[2:])
    src = tmp_path / "in.csv"
    pd.read_csv(small_csv).head(5).to_csv(src, index=False)
    dst = tmp_path / "words.jsonl"
    argv = ["explain", model, str(src), "-o", str(dst), "--top", "4", "--chunk-rows", "2"]
    argv += ["--steps", "8"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert list(rows[0]) == ["ID", "label", "word", "start", "end", "weight"]
    assert len({r["ID"] for r in rows}) == 5
    (bar,) = RecordingBar.made  # rows done out of the rows counted
    assert bar.total == 5 and bar.updates == [2, 2, 1] and bar.desc == "explain in.csv"
    texts = pd.read_csv(src, dtype={"ID": str}).set_index("ID")
    first = rows[0]
    text = (
        f"{texts.loc[first['ID'], 'TITLE'].strip()}\n{texts.loc[first['ID'], 'ABSTRACT'].strip()}"
    )
    assert text[first["start"] : first["end"]] == first["word"]


def test_missing_captum_is_one_line(trained_tiny, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "captum", None)
    with pytest.raises(ExtraMissing, match=r"pip install 'mlabel\[explain\]'"):
        Explainer(trained_tiny)
    assert main(["explain", str(trained_tiny), "--text", "a text"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mlabel[explain]" in err


def test_server_explains_items_with_spans_and_refuses_bad_input(trained_tiny):
    from fastapi.testclient import TestClient

    from mlabel.predict import Predictor
    from mlabel.serve import ServeSettings, create_app

    app = create_app(Predictor(trained_tiny, "torch"), ServeSettings())
    item = {"id": 7, "title": "Expander graphs", "abstract": "Random walks mix fast."}
    with TestClient(app) as client:
        answer = client.post("/explain", json={"items": [item], "labels": ["Physics"], "top": 3})
        assert answer.status_code == 200, answer.text
        [result] = answer.json()["results"]
        assert result["id"] == 7 and result["text"] == "Expander graphs\nRandom walks mix fast."
        [e] = result["explanations"]
        assert e["label"] == "Physics" and 0 <= e["probability"] <= 1 and len(e["words"]) == 3
        for w in e["words"]:
            assert result["text"][w["start"] : w["end"]] == w["word"]
        bad = [
            {"texts": ["a"], "labels": ["Poetry"]},
            {"texts": ["a"] * 17},
            {"texts": ["a"], "top": 0},
            {"texts": ["a"], "items": [item]},
        ]
        for body in bad:
            answer = client.post("/explain", json=body)
            assert answer.status_code == 422, (body, answer.text)
