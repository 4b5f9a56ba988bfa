"""Annif's full-text document corpus (a folder of .txt documents with .tsv/.key subject files),
read as a table by every command."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlabel.cli import main
from mlabel.data import load_examples
from mlabel.reports.profile import inspect_tables, profile_table
from mlabel.tables import count_rows, iter_table, read_table

URI = "http://example.org/topic/"


@pytest.fixture
def corpus(arxiv, tmp_path):
    """24 abstracts: URIs with labels in .tsv files, URIs alone in .key files, one document
    whose .tsv wins over its .key, one with an empty subject file and one with none."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    labels = ["Physics", "Mathematics", "Computer Science"]
    for i, row in enumerate(arxiv.head(24).itertuples()):
        (folder / f"d{i:02d}.txt").write_text(f"{row.TITLE}\n\n{row.ABSTRACT}", encoding="utf-8")
        subjects = [name for name in labels if getattr(row, name.replace(" ", "_"), 0)]
        subjects = subjects or [labels[i % 3]]
        if i == 22:
            continue  # no subject file
        if i == 21:
            (folder / f"d{i:02d}.tsv").write_text("")  # a document with no subjects
        elif i % 2:
            lines = [f"<{URI}{s.replace(' ', '_')}>\t{s}\n" for s in subjects]
            (folder / f"d{i:02d}.tsv").write_text("".join(lines), encoding="utf-8")
            if i == 1:
                (folder / "d01.key").write_text(f"<{URI}Ignored>\n")
        else:
            lines = [f"<{URI}{s.replace(' ', '_')}>\n" for s in subjects]
            (folder / f"d{i:02d}.key").write_text("".join(lines), encoding="utf-8")
    return folder


def test_a_folder_reads_as_ids_texts_and_subjects(corpus, arxiv):
    table = read_table(corpus)
    assert list(table.columns) == ["ID", "text", "subject_uris"] and len(table) == 24
    assert table["ID"].tolist() == [f"d{i:02d}" for i in range(24)]
    first = arxiv.iloc[0]
    assert table.at[0, "text"] == f"{first.TITLE}\n\n{first.ABSTRACT}"
    assert all(uri.startswith(URI) for uri in table.at[0, "subject_uris"])
    assert f"{URI}Ignored" not in table.at[1, "subject_uris"]  # .tsv before .key
    assert table.at[21, "subject_uris"] == [] and table.at[22, "subject_uris"] is None
    chunks = list(iter_table(corpus, chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 4] and chunks[2].index[0] == 20
    assert count_rows(corpus) == 24


def test_labels_alone_are_the_subjects_where_no_uris_are_given(tmp_path):
    (tmp_path / "a.txt").write_text("a text")
    (tmp_path / "a.key").write_text("cats\n\ndogs\tignored after the label\n")
    assert read_table(tmp_path).at[0, "subject_uris"] == ["cats", "dogs"]


def test_training_leaves_out_documents_without_a_subject_file(corpus):
    with pytest.warns(UserWarning, match=r"1 document\(s\) without subjects .* left out \(d22\)"):
        examples = load_examples(corpus, ["text"])
    assert len(examples) == 23 and "d22" not in examples.ids
    assert all(label.startswith(URI) for label in examples.labels)
    assert examples.y[examples.ids.index("d21")].sum() == 0  # an empty file: no subjects
    assert len(load_examples(corpus, ["text"], require_labels=False)) == 24


def test_commands_train_evaluate_and_predict_a_folder(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(corpus), "--model", "tfidf", "--out", str(run)]) == 0
    labels = json.loads((run / "model" / "mlabel.json").read_text())["labels"]
    assert labels and all(label.startswith(URI) for label in labels)
    capsys.readouterr()
    assert main(["evaluate", str(run / "model"), str(corpus), "--json"]) == 0
    captured = capsys.readouterr()
    assert "left out (d22)" in captured.err and json.loads(captured.out)["micro_f1"] > 0
    out = tmp_path / "p.csv"
    assert main(["predict", str(run / "model"), str(corpus), "-o", str(out), "--proba"]) == 0
    written = pd.read_csv(out)
    assert written["ID"].tolist() == [f"d{i:02d}" for i in range(24)]  # every document


def test_inspect_counts_the_documents_training_leaves_out(corpus):
    profile = profile_table(corpus, ["text"])
    assert profile.no_subjects == 1  # d22 has no subject file; d21's empty one means none
    overview = {row[0]: row[1] for row in inspect_tables(profile)[0].rows}
    assert overview["documents without subjects"].startswith("1 (4.2%; training and evaluation")


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda f: (f / "notes.md").write_text("x"), "no .txt or .json documents in it"),
        (lambda f: (f / "a.txt").write_bytes(b"ok\n\xff\xfe"), "a.txt: not UTF-8 text (line 2)"),
        (lambda f: (f / "a.txt").write_text("x") and (f / "a.key").write_bytes(b"\xff"), "a.key"),
        (lambda f: (f / "a.json").write_text('{"text": "x",'), "bad/a.json: not JSON"),
        (
            lambda f: (f / "a.json").write_text(annif_json("x", [{"id": 3}])),
            "bad/a.json: expected Annif's JSON document",
        ),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path, capsys, make, phrase):
    folder = tmp_path / "bad"
    folder.mkdir()
    make(folder)
    assert main(["inspect", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0], err


def annif_json(text: str, subjects: list[dict] | None, **metadata: str) -> str:
    """One document in Annif's JSON form (Annif 1.4 and later)."""
    doc: dict = {"text": text, "metadata": metadata}
    if subjects is not None:
        doc["subjects"] = subjects
    return json.dumps(doc)


def test_json_documents_read_their_subjects_and_metadata(tmp_path):
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "a.key").write_text("cats\n")
    subjects = [{"uri": f"{URI}dogs", "label": "dogs"}, {"label": "birds"}]
    (tmp_path / "b.json").write_text(annif_json("about dogs", subjects, title="Dogs"))
    (tmp_path / "c.json").write_text(annif_json("no subjects", [], title="None"))
    (tmp_path / "d.json").write_text(annif_json("no key", None))
    table = read_table(tmp_path)
    assert table["ID"].tolist() == ["a", "b", "c", "d"]  # .txt first, then .json, as Annif
    assert table.at[1, "subject_uris"] == [f"{URI}dogs", "birds"]  # the URI where given
    assert table.at[1, "title"] == "Dogs" and pd.isna(table.at[0, "title"])
    with pytest.warns(UserWarning, match=r"2 document\(s\) without .* left out \(c, d\)"):
        examples = load_examples(tmp_path, ["text"])
    assert examples.ids == ["a", "b"]
    assert load_examples(tmp_path, ["title", "text"], require_labels=False).texts[1] == (
        "Dogs\nabout dogs"
    )


def test_annif_json_lines_corpus_reads_as_it_is(tmp_path):
    lines = [
        {"document_id": "x1", "text": "about dogs", "subjects": [{"uri": f"{URI}dogs"}],
         "metadata": {"title": "Dogs"}},
        {"document_id": "x2", "text": "about cats", "subjects": [{"label": "cats"}]},
    ]  # fmt: skip
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    examples = load_examples(path, ["title", "text"], id_col="document_id")
    assert examples.ids == ["x1", "x2"] and examples.labels == ["cats", f"{URI}dogs"]
    assert examples.texts == ["Dogs\nabout dogs", "about cats"]
    assert examples.y.tolist() == [[0, 1], [1, 0]]


def test_a_json_lines_chunk_whose_lines_lack_a_field_has_it_empty(tmp_path):
    """Read in chunks, a chunk whose documents all lack a field (a title in the metadata, a
    plain field) still has its column, empty, so `--text-cols title text` reads every chunk."""
    lines = [
        {"id": "1", "text": "a", "note": "n", "metadata": {"title": "T"}},
        {"id": "2", "text": "b", "metadata": {}},
        {"id": "3", "text": "c"},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    chunks = list(iter_table(path, chunk_rows=1, str_cols=["id", "title", "text"]))
    assert [list(c.columns) for c in chunks] == [["id", "text", "note", "title"]] * 3
    assert pd.concat(chunks)["title"].tolist()[0] == "T" and chunks[2]["note"].isna().all()


def test_a_metadata_column_of_plain_values_stays_a_column(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"text": ["a", "b"], "metadata": ["x", "y"], "L": [1, 0]}).to_csv(path)
    assert read_table(path)["metadata"].tolist() == ["x", "y"]


def test_annif_subjects_in_parquet_are_read_too(tmp_path):
    path = tmp_path / "corpus.parquet"
    subjects = [[{"uri": f"{URI}dogs", "label": "dogs"}], [{"uri": f"{URI}cats", "label": "cats"}]]
    pd.DataFrame({"text": ["dogs", "cats"], "subjects": subjects}).to_parquet(path)
    assert load_examples(path, ["text"]).labels == [f"{URI}cats", f"{URI}dogs"]
