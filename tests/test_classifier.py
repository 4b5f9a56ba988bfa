"""The scikit-learn style API, with both label forms (0/1 columns and one list column)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlabel import Classifier, DataError
from mlabel.cli import main

TAGS = [f"topic-{i:02d}" for i in range(28)]


def synthetic_tags(n: int = 140, seed: int = 0) -> pd.DataFrame:
    """Texts made of label words plus noise; every label on at least n/28 rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        tags = {TAGS[i % len(TAGS)], *rng.choice(TAGS, size=rng.integers(0, 3))}
        words = [t.replace("-", " ") for t in sorted(tags)] + list(rng.choice(["the", "a"], 5))
        rows.append({"doc": f"d{i}", "body": " ".join(words), "tags": "|".join(sorted(tags))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def list_data() -> pd.DataFrame:
    return synthetic_tags()


@pytest.fixture(scope="module")
def list_clf(tiny_encoder, list_data, tmp_path_factory) -> Classifier:
    settings = dict(text_cols=["body"], id_col="doc", labels_col="tags", max_len=32, epochs=1)
    settings.update(batch_size=16, lr=1e-3, threads=2, seed=1, precision="fp32", val_frac=0.25)
    out = tmp_path_factory.mktemp("list-run")
    clf = Classifier(model=tiny_encoder, **settings)
    assert clf.fit(list_data, out=out) is clf
    return clf


@pytest.fixture(scope="module")
def tiny_clf(trained_tiny) -> Classifier:
    return Classifier.load(trained_tiny)


def test_learned_state(list_clf):
    assert list_clf.labels_ == TAGS  # sorted label names from the list column
    assert list_clf.thresholds_.shape == (len(TAGS),)
    assert len(list_clf.history_) == 1


def test_predict_proba_and_predict_agree(list_clf, list_data):
    texts = list_data["body"].tolist()[:20]
    probs = list_clf.predict_proba(texts)
    assert probs.shape == (20, len(TAGS)) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    expected = [[t for t, p, c in zip(TAGS, row, list_clf.thresholds_) if p >= c] for row in probs]
    assert list_clf.predict(texts) == expected
    assert list_clf.predict(texts, threshold=0.0) == [TAGS] * 20


def test_predict_a_dataframe(tiny_clf, arxiv):
    rows = arxiv.head(6)
    texts = (rows["TITLE"] + "\n" + rows["ABSTRACT"]).tolist()
    np.testing.assert_allclose(tiny_clf.predict_proba(rows), tiny_clf.predict_proba(texts))
    assert tiny_clf.predict(rows) == tiny_clf.predict(texts)


class HubDataset:
    """Stands in for a Hugging Face `datasets.Dataset`: a table that converts itself."""

    def __init__(self, df: pd.DataFrame):
        self.df = df

    def to_pandas(self) -> pd.DataFrame:
        return self.df


@pytest.mark.filterwarnings("ignore:.*no positive example")  # six rows lack some labels
def test_tables_that_convert_themselves_read_as_their_dataframe(tiny_clf, arxiv):
    """A pyarrow Table or a Hugging Face Dataset (`to_pandas()`), as predict's input and as a
    table to evaluate on; list(dataset) would have given rows or columns, not texts."""
    rows = arxiv.head(6)
    want = tiny_clf.predict_proba(rows)
    for table in (pa.Table.from_pandas(rows), HubDataset(rows)):
        np.testing.assert_array_equal(tiny_clf.predict_proba(table), want)
        assert tiny_clf.evaluate(table) == tiny_clf.evaluate(rows)


def test_dataframe_without_text_columns(tiny_clf):
    with pytest.raises(DataError, match="column 'ABSTRACT' not found"):
        tiny_clf.predict(pd.DataFrame({"TITLE": ["x"]}))


def test_one_string_is_a_type_error(tiny_clf):
    with pytest.raises(TypeError, match="wrap it in a list"):
        tiny_clf.predict("a single text")
    with pytest.raises(TypeError, match="wrap it in a list"):
        tiny_clf.predict_proba("a single text")


def test_empty_input(tiny_clf):
    assert tiny_clf.predict_proba([]).shape == (0, len(tiny_clf.labels_))
    assert tiny_clf.predict([]) == []


def test_an_empty_text_gets_no_label(tiny_clf, arxiv):
    """Even under "at least one label": it was read, not scored (a table row without text, as
    `mlabel predict` gives it), where a DataFrame with such a row was refused."""
    rows = arxiv.head(3).copy()
    rows.loc[1, ["TITLE", "ABSTRACT"]] = None
    got = tiny_clf.predict(rows, min_labels=1)
    assert got[1] == [] and got[0] and got[2]
    assert tiny_clf.predict(["", "  ", "Quantum spin chains"], min_labels=1)[:2] == [[], []]


@pytest.mark.parametrize("which", ["tiny_clf", "list_clf"])
def test_save_load_round_trip(request, which, arxiv, tmp_path):
    clf = request.getfixturevalue(which)
    texts = arxiv["ABSTRACT"].head(8).tolist()
    assert clf.save(tmp_path / "copy") == tmp_path / "copy"
    loaded = Classifier.load(tmp_path / "copy")
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)
    assert loaded.labels_ == clf.labels_
    np.testing.assert_array_equal(loaded.thresholds_, clf.thresholds_)


def test_list_model_predicts_and_evaluates_from_files(list_clf, list_data, tmp_path, capsys):
    data = tmp_path / "tags.csv"
    list_data.to_csv(data, index=False)
    model = str(list_clf.model_dir_)
    assert (
        main(["predict", model, str(data), "--id-col", "doc", "-o", str(tmp_path / "p.csv")]) == 0
    )
    out = pd.read_csv(tmp_path / "p.csv", dtype={"doc": str})
    assert list(out.columns) == ["doc", *TAGS]
    assert out["doc"].tolist() == list_data["doc"].tolist()
    capsys.readouterr()
    assert main(["evaluate", model, str(data), "--json"]) == 0
    assert "micro_f1" in capsys.readouterr().out


def test_evaluate_a_dataframe_as_the_cli_does(list_clf, list_data, tmp_path, capsys):
    data = tmp_path / "tags.csv"
    list_data.to_csv(data, index=False)
    assert main(["evaluate", str(list_clf.model_dir_), str(data), "--json", "--top-k", "2"]) == 0
    expected = json.loads(capsys.readouterr().out)
    metrics = list_clf.evaluate(list_data, top_k=2)
    assert json.loads(json.dumps(metrics)) == expected
    assert set(metrics["per_label"]) == set(TAGS)
    assert list_clf.evaluate(list_data, threshold=0.0)["micro_recall"] == 1.0


def test_a_list_model_scores_tables_that_hold_its_labels_otherwise(list_clf, list_data):
    """Trained on a `tags` list column, scored on the same labels as 0/1 columns or in a list
    column of another name: the same figures (its `tags` column was required). A table with
    neither names the labels it lacks."""
    want = list_clf.evaluate(list_data)
    wide = list_data.drop(columns="tags").assign(
        **{
            t: list_data["tags"].str.split("|").map(lambda names, t=t: int(t in names))
            for t in TAGS
        }
    )
    assert list_clf.evaluate(wide) == want
    assert list_clf.evaluate(list_data.rename(columns={"tags": "subjects"})) == want
    with pytest.raises(
        DataError, match=rf"no column for {len(TAGS)} of the model's {len(TAGS)} labels"
    ):
        list_clf.evaluate(list_data.drop(columns="tags").assign(other=1, more=0))


def test_evaluate_reads_the_list_column_it_is_given(list_clf, list_data, tmp_path, capsys):
    """With other columns beside it, a list column of another name is not found alone."""
    table = list_data.rename(columns={"tags": "subjects"}).assign(year=2020, pages=3)
    table["subjects"] = table["subjects"].str.replace("|", ";")
    table.to_csv(tmp_path / "t.csv", index=False)
    model, data = str(list_clf.model_dir_), str(tmp_path / "t.csv")
    assert main(["evaluate", model, data, "--json"]) == 2
    assert "no column for 28 of the model's 28 labels" in capsys.readouterr().err
    options = ["--labels-col", "subjects", "--label-sep", ";", "--json"]
    assert main(["evaluate", model, data, *options]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(
        json.dumps(list_clf.evaluate(list_data))
    )
    assert main(["evaluate", model, data, "--labels-col", "subject"]) == 2
    err = capsys.readouterr().err
    assert "t.csv: column 'subject' not found" in err and "(--labels-col names them)" in err


def test_a_single_label_trains_evaluates_and_predicts(tiny_encoder, list_data, tmp_path):
    """A table with one 0/1 label column (a binary task) goes through training, its
    validation split and evaluation; the figures are the label's own."""
    data = list_data[["doc", "body"]].assign(first=list_data["tags"].str.contains("topic-00"))
    settings = dict(text_cols=["body"], id_col="doc", max_len=32, epochs=1, batch_size=16)
    clf = Classifier(model=tiny_encoder, val_frac=0.25, precision="fp32", **settings)
    clf.fit(data.astype({"first": int}), out=tmp_path / "run")
    assert clf.labels_ == ["first"] and clf.thresholds_.shape == (1,)
    assert clf.predict_proba(["topic 00 the"]).shape == (1, 1)
    m = clf.evaluate(data.astype({"first": int}))
    assert m["micro_f1"] == m["macro_f1"] == m["per_label"]["first"]["f1"]


def test_bad_setting_fails_at_fit(tiny_encoder, list_data):
    with pytest.raises(ValueError, match="dropout is 2.0"):
        Classifier(model=tiny_encoder, text_cols=["body"], dropout=2).fit(list_data)


def test_fit_takes_texts_and_labels_as_scikit_learn_does(tiny_encoder, list_data, tmp_path):
    """`fit(texts, y)`: y as label lists, a 0/1 DataFrame, an array (labels "0", "1", ...), a
    sparse matrix or one class name per text give the same label sets; `val` and `evaluate`
    take a (texts, y) pair. A bare list of texts, or a y of another length, is refused."""
    from scipy import sparse

    texts = list_data["body"].tolist()
    lists = list_data["tags"].str.split("|").tolist()
    matrix = pd.DataFrame([[int(t in row) for t in TAGS] for row in lists], columns=TAGS)
    tfidf = Classifier("tfidf", val_frac=0.25)
    assert tfidf.fit(texts, lists).labels_ == TAGS
    by_names = tfidf.predict(texts[:30])
    assert tfidf.fit(texts, matrix).labels_ == TAGS and tfidf.predict(texts[:30]) == by_names
    numbers = [
        [TAGS[int(n)] for n in row]
        for row in tfidf.fit(texts, matrix.to_numpy()).predict(texts[:30])
    ]
    assert tfidf.labels_ == [str(i) for i in range(len(TAGS))] and numbers == by_names
    assert tfidf.fit(texts, sparse.csr_matrix(matrix.to_numpy())).predict(texts[:30]) == [
        [str(TAGS.index(t)) for t in row] for row in by_names
    ]
    assert tfidf.fit(texts, [row[0] for row in lists]).labels_ == sorted({r[0] for r in lists})
    settings = dict(max_len=32, epochs=1, batch_size=16, precision="fp32")
    clf = Classifier(model=tiny_encoder, **settings)
    clf.fit(texts[:100], lists[:100], val=(texts[100:], matrix.iloc[100:]), out=tmp_path / "run")
    assert clf.labels_ == TAGS and len(clf.history_) == 1
    by_lists = clf.evaluate((texts[100:], lists[100:]))
    assert by_lists["ranking_rows"] == len(texts) - 100
    assert clf.evaluate((texts[100:], matrix.iloc[100:]))["micro_f1"] == by_lists["micro_f1"]
    with pytest.raises(TypeError, match=r"needs its labels: fit\(texts, y\)"):
        tfidf.fit(texts)
    with pytest.raises(DataError, match="y has 3 rows and there are 140 texts"):
        tfidf.fit(texts, lists[:3])
