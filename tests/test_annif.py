"""Annif's REST API (`mlabel.annif_api`) and subject URIs (`mlabel.subjects`): the shapes of
Annif's spec through TestClient, then real clients we did not write (annif-client on a live
uvicorn server; Annif itself in bench/annif_check.py, run here when .venv-annif exists)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import running
from fastapi.testclient import TestClient

from mlabel.annif_api import annif_project, default_project_id, model_text
from mlabel.classifier import fit_model
from mlabel.cli import build_parser
from mlabel.config import TrainConfig
from mlabel.errors import ConfigError, DataError, ModelError
from mlabel.folder import ModelInfo
from mlabel.predict import load_predictor
from mlabel.serve import ServeSettings, create_app
from mlabel.subjects import read_uri_table, serving_subjects, serving_uris

REPO = Path(__file__).resolve().parents[1]
ANNIF_VENV = REPO / ".venv-annif"
TEXT = "We prove a bound on the spectral gap of random regular graphs.\nGraphs and spectra."


@pytest.fixture(scope="module")
def predictor(trained_tiny):
    return load_predictor(trained_tiny, engine="torch", device="cpu")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeSettings(project_id="arxiv"))) as c:
        yield c


def is_problem(response, status: int) -> dict:
    """Annif's error shape: RFC 7807 problem details."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    return body


# ----------------------------------------------------------------------------- the spec's shapes


def test_projects_and_project(client, predictor):
    listed = client.get("/v1/projects").json()["projects"]
    assert [p["project_id"] for p in listed] == ["arxiv"]
    project = client.get("/v1/projects/arxiv").json()
    assert project == listed[0]
    assert project["language"] == "en" and project["backend"] == {"backend_id": "mlabel"}
    assert project["is_trained"] is True and project["modification_time"].endswith("Z")
    assert project["vocab"]["size"] == len(predictor.labels)
    body = is_problem(client.get("/v1/projects/nope"), 404)
    assert body["detail"] == "Project 'nope' not found"


def test_suggest_is_every_probability_best_first(client, predictor):
    """Defaults limit 10 and threshold 0: all six labels, unrounded probabilities, best first."""
    results = client.post("/v1/projects/arxiv/suggest", data={"text": TEXT}).json()["results"]
    probs = predictor.predict_proba([TEXT.strip()])[0]
    assert [r["score"] for r in results] == sorted(probs.tolist(), reverse=True)
    assert {r["label"] for r in results} == set(predictor.labels)
    first = results[0]
    assert set(first) == {"uri", "label", "notation", "score"} and first["notation"] is None
    assert first["uri"] == "urn:mlabel:arxiv:" + first["label"].replace(" ", "%20")


def test_limit_and_threshold_cut_as_evaluate_does(client, predictor):
    probs = predictor.predict_proba([TEXT])[0]
    cut = float(np.sort(probs)[-3])  # the third best: at most 3 labels are at or above it
    answer = client.post(
        "/v1/projects/arxiv/suggest", data={"text": TEXT, "limit": 2, "threshold": cut}
    )
    assert [r["score"] for r in answer.json()["results"]] == sorted(probs.tolist())[-1:-3:-1]
    answer = client.post("/v1/projects/arxiv/suggest", data={"text": TEXT, "threshold": cut})
    assert len(answer.json()["results"]) == 3
    empty = client.post("/v1/projects/arxiv/suggest", data={"text": "  ", "project": "x"})
    assert empty.json() == {"results": []}  # Annif's http backend sends `project` too


@pytest.mark.parametrize(
    "form, status, words",
    [
        ({"limit": "3"}, 400, "'text' is a required property"),
        ({"text": TEXT, "limit": "-1"}, 400, "limit is -1"),
        ({"text": TEXT, "limit": "many"}, 400, "limit is 'many'"),
        ({"text": TEXT, "threshold": "1.5"}, 400, "threshold is 1.5"),
        ({"text": TEXT, "threshold": "nan"}, 400, "threshold is nan"),
        ({"text": TEXT, "language": "fi"}, 400, 'language "fi" not supported'),
        ({"text": "x" * 100_001}, 400, "the limit is 100,000"),
    ],
)
def test_suggest_refuses_bad_forms(client, form, status, words):
    assert (
        words in is_problem(client.post("/v1/projects/arxiv/suggest", data=form), status)["detail"]
    )


def test_suggest_batch(client):
    documents = [{"text": TEXT, "document_id": "a"}, {"text": "Stock returns and volatility."}]
    answer = client.post(
        "/v1/projects/arxiv/suggest-batch?limit=2", json={"documents": documents}
    ).json()
    assert [d["document_id"] for d in answer] == ["a", None]
    assert all(len(d["results"]) == 2 for d in answer)
    single = client.post("/v1/projects/arxiv/suggest", data={"text": TEXT, "limit": 2}).json()
    # the same suggestions; scores equal up to float32 rounding (a batch pads to its longest text)
    batch, alone = answer[0]["results"], single["results"]
    assert [r["uri"] for r in batch] == [r["uri"] for r in alone]
    assert [r["score"] for r in batch] == pytest.approx([r["score"] for r in alone], rel=1e-6)
    too_many = {"documents": [{"text": TEXT}] * 33}
    assert (
        "limit is 32"
        in is_problem(client.post("/v1/projects/arxiv/suggest-batch", json=too_many), 400)["detail"]
    )
    is_problem(client.post("/v1/projects/arxiv/suggest-batch", json={"docs": []}), 400)
    is_problem(client.post("/v1/projects/other/suggest-batch", json={"documents": []}), 404)
    is_problem(client.post("/v1/projects/arxiv/learn", json=[]), 403)


def test_detect_language_answers_as_annif(client):
    """The share of the text's words each candidate knows, best first, null for the rest: what
    Annif's /v1/detect-language answers (the same simplemma call); its errors as Annif's."""
    pytest.importorskip("simplemma")
    url = "/v1/detect-language"
    english = client.post(url, json={"text": "The quick brown fox", "languages": ["fi", "en"]})
    assert english.json() == {
        "results": [
            {"language": "en", "score": 1.0},
            {"language": "fi", "score": 0.0},
            {"language": None, "score": 0.0},
        ]
    }
    finnish = {
        "text": "Kettu hyppäsi laiskan koiran yli ja juoksi metsään",
        "languages": ["en", "fi", "sv"],
    }
    assert client.post(url, json=finnish).json()["results"] == [  # Annif 1.4.3's own answer
        {"language": "fi", "score": pytest.approx(5 / 6)},
        {"language": None, "score": pytest.approx(1 / 6)},
        {"language": "en", "score": 0.0},
        {"language": "sv", "score": 0.0},
    ]
    assert (
        is_problem(client.post(url, json={"text": "a fox", "languages": ["xx"]}), 400)["detail"]
        == "unsupported candidate languages"
    )
    for body, detail in [
        ({"text": "x"}, "expected a list of 1 to 5 language codes"),
        ({"text": "x", "languages": ["en"] * 6}, "expected a list of 1 to 5"),
        ({"text": "x", "languages": ["english"]}, "codes of 2 or 3 letters"),
        ({"languages": ["en"]}, 'expected a JSON object {"text"'),
        ({"text": "x" * 100_001, "languages": ["en"]}, "the limit is 100000"),
    ]:
        assert detail in is_problem(client.post(url, json=body), 400)["detail"]
    assert "not valid JSON" in is_problem(client.post(url, content=b"{"), 400)["detail"]


def test_a_model_trained_on_title_and_text_reads_the_title_from_annifs_metadata(tmp_path):
    """Annif sends a document's title as metadata (`metadata_title` in a form, `metadata` in a
    batch); a model trained on `title` and `text` reads both, joined as training joined them."""
    docs = [
        {"text": f"{w} text {i}", "metadata": {"title": f"{w} title"}, "subjects": [{"uri": u}]}
        for i in range(20)
        for w, u in (("cats", "http://x/cats"), ("dogs", "http://x/dogs"))
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = TrainConfig(model="tfidf", text_cols=["title", "text"], val_frac=0.25)
    predictor = load_predictor(fit_model(cfg, corpus, tmp_path / "m").model_dir)
    expected = predictor.predict_proba(["cats title\nsome text"])[0].max()
    with TestClient(create_app(predictor)) as c:
        form = {"text": " some text ", "metadata_title": "cats title", "limit": 1}
        one = c.post("/v1/projects/m/suggest", data=form).json()["results"]
        batch = c.post(
            "/v1/projects/m/suggest-batch?limit=1",
            json={"documents": [{"text": "some text", "metadata": {"title": "cats title"}}]},
        ).json()[0]["results"]
        bare = c.post("/v1/projects/m/suggest", data={"text": "some text", "limit": 1}).json()
        bad = c.post(
            "/v1/projects/m/suggest-batch",
            json={"documents": [{"text": "x", "metadata": {"title": 3}}]},
        )
    assert one == batch and one[0]["score"] == pytest.approx(float(expected))
    assert bare["results"][0]["score"] != one[0]["score"]  # the title counts
    assert "documents[0].metadata: expected an object of strings" in is_problem(bad, 400)["detail"]
    assert model_text("t", {"title": "T"}, ["text"]) == "t"  # a model of text alone


def test_api_key_guards_the_annif_api(predictor):
    with TestClient(create_app(predictor, ServeSettings(api_key="k"))) as c:
        assert c.get("/v1/projects").status_code == 401
        answer = c.get("/v1/projects", headers={"Authorization": "Bearer k"})
        assert answer.json()["projects"][0]["project_id"] == default_project_id(predictor.model_dir)


def test_serve_options(predictor):
    args = build_parser().parse_args(
        [
            "serve",
            "m",
            "--project-id",
            "yso-en",
            "--language",
            "fi",
            "--subject-uri-base",
            "http://x.org/s/",
            "--subject-uris",
            "vocab.tsv",
        ]
    )
    assert (args.project_id, args.language, args.subject_uri_base, args.subject_uris) == (
        "yso-en",
        "fi",
        "http://x.org/s/",
        "vocab.tsv",
    )
    settings = ServeSettings(subject_uri_base="http://x.org/s/", language="fi")
    with TestClient(create_app(predictor, settings)) as c:
        url = f"/v1/projects/{default_project_id(predictor.model_dir)}/suggest"
        result = c.post(url, data={"text": TEXT}).json()["results"][0]
        assert result["uri"] == "http://x.org/s/" + result["label"].replace(" ", "%20")
    for bad in ({"project_id": "a/b"}, {"language": "english language"}, {"subject_uri_base": "x"}):
        with pytest.raises(ConfigError):
            create_app(predictor, ServeSettings(**bad))


# ----------------------------------------------------------------------------- subject URIs


def test_uri_table_forms(tmp_path):
    csv = tmp_path / "uris.csv"
    csv.write_text("Label,URI,notation\nPhysics,http://x/p,1\n")
    assert read_uri_table(csv) == {"Physics": "http://x/p"}
    annif_tsv = tmp_path / "vocab.tsv"  # Annif's own subject file: <uri> TAB label
    annif_tsv.write_text("<http://x/p>\tPhysics\n<http://x/m>\tMathematics\n")
    assert read_uri_table(annif_tsv) == {"Physics": "http://x/p", "Mathematics": "http://x/m"}
    annif_csv = tmp_path / "vocab2.csv"
    annif_csv.write_text("uri,label_en\nhttp://x/p,Physics\n")
    assert read_uri_table(annif_csv) == {"Physics": "http://x/p"}
    for text, words in [
        ("name,uri\nPhysics,http://x\n", "lacks a `label`"),
        ("label,uri\nPhysics,\n", "row 2: expected a label and a URI"),
        ("label,uri\nPhysics,a\nPhysics,b\n", "'Physics' is given two URIs"),
    ]:
        csv.write_text(text)
        with pytest.raises(DataError, match=words):
            read_uri_table(csv)


def test_serving_uris_prefer_the_serve_option_then_the_stored_table():
    stored = {"a b": "http://s/1", "c": "http://s/2"}
    assert serving_uris(["a b", "c"], stored, "http://o/", "p") == {
        "a b": "http://o/a%20b",
        "c": "http://o/c",
    }
    assert serving_uris(["a b", "c"], stored, None, "p") == stored
    assert serving_uris(["a/b"], None, None, "p") == {"a/b": "urn:mlabel:p:a%2Fb"}
    # a label that is a URI (read from Annif's corpus form) stands for itself
    own = ["http://x.org/s/1", "URN:isbn:1", "http://x.org/a b", "mailto:a@b"]
    assert list(serving_uris(own, None, None, "p").values()) == [
        "http://x.org/s/1",
        "URN:isbn:1",
        "urn:mlabel:p:http%3A%2F%2Fx.org%2Fa%20b",
        "urn:mlabel:p:mailto%3Aa%40b",
    ]


def test_config_checks_uri_options(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(subject_uri_base="http://x/", subject_uris="t.csv")
    with pytest.raises(ConfigError, match="subject_uri_base is 'x y'"):
        TrainConfig(subject_uri_base="x y")
    with pytest.raises(DataError, match="not found"):
        TrainConfig(subject_uris=str(tmp_path / "missing.csv"))


def test_model_info_rejects_uris_that_do_not_match_labels():
    with pytest.raises(ModelError, match="name each label once"):
        ModelInfo(["a", "b"], [0.5, 0.5], ["text"], kind="tfidf", subject_uris={"a": "u:a"})
    with pytest.raises(ModelError, match="without spaces"):
        ModelInfo(["a"], [0.5], ["text"], kind="tfidf", subject_uris={"a": "u a"})
    with pytest.raises(ModelError, match=r"subject_names names what is not a label: \['b'\]"):
        ModelInfo(["a"], [0.5], ["text"], kind="tfidf", subject_names={"b": "B"})
    with pytest.raises(ModelError, match="readable names"):
        ModelInfo(["a"], [0.5], ["text"], kind="tfidf", subject_names={"a": ""})


def test_serving_takes_uris_and_names_from_a_table(small_csv, tmp_path):
    """`serve --subject-uris`: a table's URIs for a model stored without them, its names for
    labels that are URIs; not with a base too; a table short of a label stops before serving."""
    predictor = load_predictor(train_tfidf(small_csv, tmp_path / "m"))
    labels = predictor.labels
    table = tmp_path / "t.csv"
    table.write_text(
        "uri,label_en\n" + "".join(f"http://y/{i},{n}\n" for i, n in enumerate(labels))
    )
    project = annif_project(predictor, "m", subject_uris=table)
    assert project.uris == {n: f"http://y/{i}" for i, n in enumerate(labels)}
    assert project.names == {n: n for n in labels}  # names only differ for labels that are URIs
    named = serving_subjects(["http://y/0", labels[1]], (None, None), None, "p", table)[1]
    assert named == {"http://y/0": labels[0], labels[1]: labels[1]}
    with pytest.raises(ConfigError, match="not both"):
        annif_project(predictor, "m", subject_uri_base="http://x/", subject_uris=table)
    table.write_text(f"uri,label_en\nhttp://y/0,{labels[0]}\n")
    with pytest.raises(DataError, match="t.csv: no URI for 5 of the labels"):
        create_app(predictor, ServeSettings(subject_uris=str(table)))


def train_tfidf(small_csv, out: Path, **uris) -> Path:
    cfg = TrainConfig(model="tfidf", text_cols=["TITLE", "ABSTRACT"], val_frac=0.25, **uris)
    return fit_model(cfg, small_csv, out).model_dir


def test_uris_stored_at_training(small_csv, tmp_path):
    model = train_tfidf(small_csv, tmp_path / "a", subject_uri_base="http://x.org/")
    uris = json.loads((model / "mlabel.json").read_text())["subject_uris"]
    labels = list(uris)
    assert uris["Computer Science"] == "http://x.org/Computer%20Science"
    table = tmp_path / "uris.tsv"
    table.write_text("label\turi\n" + "".join(f"{n}\thttp://y/{i}\n" for i, n in enumerate(labels)))
    model = train_tfidf(small_csv, tmp_path / "b", subject_uris=str(table))
    assert load_predictor(model).info.subject_uris == {
        n: f"http://y/{i}" for i, n in enumerate(labels)
    }
    with TestClient(create_app(load_predictor(model))) as c:
        result = c.post("/v1/projects/b/suggest", data={"text": TEXT}).json()["results"][0]
        assert result["uri"] == f"http://y/{labels.index(result['label'])}"
    table.write_text(f"label\turi\n{labels[1]}\thttp://y/1\n")
    with pytest.raises(DataError, match=f"uris.tsv: no URI for 5 of the labels: '{labels[0]}'"):
        train_tfidf(small_csv, tmp_path / "c", subject_uris=str(table))


def test_a_corpus_in_annifs_form_trains_and_answers_its_own_uris(small_csv, tmp_path):
    """Annif's short-text corpus (a TSV without header: text TAB `<uri> <uri>`) trains as it is:
    the URIs are the labels, and the Annif API answers them as the subjects' URIs."""
    df = pd.read_csv(small_csv)
    labels = df.columns[3:]
    lines = [
        f"{r.TITLE} {r.ABSTRACT}".replace("\t", " ").replace("\n", " ")
        + "\t"
        + " ".join(f"<http://x.org/{n.replace(' ', '_')}>" for n in labels if r[n])
        for _, r in df.iterrows()
    ]
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = TrainConfig(model="tfidf", val_frac=0.25)  # text_cols: the default `text`
    model = fit_model(cfg, corpus, tmp_path / "m").model_dir
    predictor = load_predictor(model)
    assert predictor.labels == sorted(f"http://x.org/{n.replace(' ', '_')}" for n in labels)
    with TestClient(create_app(predictor)) as c:
        results_before = c.post("/v1/projects/m/suggest", data={"text": TEXT}).json()["results"]
    assert {r["uri"] for r in results_before} == set(predictor.labels)
    assert all(r["uri"] == r["label"] for r in results_before)
    # with the vocabulary (Annif's TSV subject file: `<uri>` TAB label) the URIs are its own
    vocab = tmp_path / "vocab.tsv"
    vocab.write_text("".join(f"<{u}>\t{u.rsplit('/', 1)[1]}\n" for u in predictor.labels))
    cfg = TrainConfig(model="tfidf", val_frac=0.25, subject_uris=str(vocab))
    model = fit_model(cfg, corpus, tmp_path / "v").model_dir
    named = load_predictor(model)
    assert named.info.subject_uris == {u: u for u in predictor.labels}
    names = {u: u.rsplit("/", 1)[1] for u in predictor.labels}
    assert named.info.subject_names == names  # the vocabulary's labels, for the API's `label`
    with TestClient(create_app(named)) as c:
        results = c.post("/v1/projects/v/suggest", data={"text": TEXT}).json()["results"]
    assert results and all(r["label"] == names[r["uri"]] for r in results)
    # the model trained without the vocabulary takes it when served
    with TestClient(create_app(predictor, ServeSettings(subject_uris=str(vocab)))) as c:
        served = c.post("/v1/projects/m/suggest", data={"text": TEXT}).json()["results"]
    assert served == [{**r, "label": names[r["uri"]]} for r in results_before]


# ----------------------------------------------------------------------------- real clients


@pytest.fixture(scope="module")
def live_api(predictor):
    """mlabel serve's app on uvicorn in a thread; the base URL annif-client wants."""
    app = create_app(predictor, ServeSettings(project_id="arxiv"))
    with running(app) as url:
        yield f"{url}/v1/"


def test_annif_client(live_api, predictor):
    annif_client = pytest.importorskip("annif_client")
    client = annif_client.AnnifClient(api_base=live_api)
    assert client.api_info["title"].startswith("Annif REST API")
    assert [p["project_id"] for p in client.projects] == ["arxiv"]
    assert client.get_project("arxiv")["language"] == "en"
    with pytest.raises(ValueError, match="Project 'nope' not found"):
        client.get_project("nope")
    results = client.suggest("arxiv", TEXT, limit=3)
    probs = np.sort(predictor.predict_proba([TEXT])[0])[::-1]
    assert [r["score"] for r in results] == probs[:3].tolist()
    assert client.suggest("arxiv", TEXT, threshold=1.0) == []
    batch = client.suggest_batch("arxiv", [{"text": TEXT, "document_id": "d1"}], limit=3)
    assert batch == [{"document_id": "d1", "results": results}]


@pytest.mark.skipif(not (ANNIF_VENV / "bin" / "annif").exists(), reason="no .venv-annif")
def test_annif_eval_matches_mlabel_evaluate(trained_tiny, tmp_path):
    """Annif with its http backend on mlabel serve (the tiny transformer blended with TF-IDF):
    `annif eval` equals `mlabel evaluate`, set and ranking metrics alike."""
    script = REPO / "bench" / "annif_check.py"
    argv = ["--quick", "--work", str(tmp_path), "--model-dir", str(trained_tiny)]
    run = subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "all figures match" in run.stdout


def test_an_incomplete_uri_table_stops_a_transformer_run_before_training(
    small_csv, tiny_settings, tmp_path
):
    from mlabel.classifier import fit_model
    from mlabel.config import TrainConfig

    table = tmp_path / "uris.tsv"
    table.write_text("label\turi\nPhysics\thttp://y/1\n")
    cfg = TrainConfig(**tiny_settings, subject_uris=str(table))
    with pytest.raises(DataError, match="uris.tsv: no URI for 5 of the labels"):
        fit_model(cfg, small_csv, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before the first epoch
