"""Reports: `mlabel inspect` and `mlabel evaluate --report` write valid PNGs and self-contained
HTML whose numbers match the metrics module."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mlabel.cli import main
from mlabel.evaluation import evaluate_model
from mlabel.reports.curves import plot_training_curves
from mlabel.reports.evaluation import evaluation_tables, find_metrics_jsonl
from mlabel.reports.profile import profile_table
from mlabel.reports.render import label_colors

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INSPECT_PLOTS = {
    "label_frequencies.png",
    "labels_per_row.png",
    "label_cooccurrence.png",
    "length_words.png",
    "length_tokens.png",
    "length_by_label.png",
}
EVALUATE_PLOTS = {
    "confusion_matrices.png",
    "pr_curves.png",
    "f1_threshold.png",
    "f1_threshold_per_label.png",
    "calibration.png",
    "training_curves.png",
}


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        image.verify()
        assert min(image.size) > 100


def assert_report(folder, plots: set[str]) -> str:
    """Every plot is a PNG, report.md links them all, report.html embeds them; returns the md."""
    assert {p.name for p in folder.glob("*.png")} == plots
    for name in plots:
        assert_png(folder / name)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert {m for m in re.findall(r"\]\(([^)]+\.png)\)", md)} == plots
    page = (folder / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(plots)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    return md


def table_value(md: str, name: str) -> str:
    """The value cell of a two-column markdown row `| name | value |`."""
    return re.search(rf"^\| {re.escape(name)} \| ([^|]+) \|$", md, re.M).group(1).strip()


@pytest.fixture(scope="module")
def list_csv(small_csv, tmp_path_factory):
    """The small data with its labels in one list column, plus an empty text and repeated rows."""
    df = pd.read_csv(small_csv, dtype={"ID": str})
    labels = df.columns[3:]
    out = df[["ID", "TITLE", "ABSTRACT"]].copy()
    out["tags"] = [";".join(labels[row > 0]) for row in df[labels].to_numpy()]
    out.loc[3, ["TITLE", "ABSTRACT"]] = [None, " "]
    out = pd.concat([out, out.iloc[[0, 1]]], ignore_index=True)  # duplicate ids and texts
    path = tmp_path_factory.mktemp("lists") / "tags.jsonl"
    out.to_json(path, orient="records", lines=True)
    return path


def test_inspect_label_columns(small_csv, tmp_path, capsys):
    out = tmp_path / "inspect"
    assert (
        main(["inspect", str(small_csv), "--text-cols", "TITLE", "ABSTRACT", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "Suggested --max-len" in printed and "Positives per label" in printed
    md = assert_report(out, INSPECT_PLOTS)
    df = pd.read_csv(small_csv)
    assert table_value(md, "rows") == str(len(df))
    assert table_value(md, "labels") == "6"
    counts = df.iloc[:, 3:].sum()
    for label, count in counts.items():
        assert re.search(rf"^\| {label} \| {count} \|", md, re.M), label


def test_inspect_list_column_reports_empty_and_duplicates(list_csv, tiny_encoder, tmp_path):
    out = tmp_path / "inspect"
    args = ["inspect", str(list_csv), "--text-cols", "TITLE", "ABSTRACT", "--labels-col", "tags"]
    assert main([*args, "--label-sep", ";", "--model", tiny_encoder, "--out", str(out)]) == 0
    md = assert_report(out, INSPECT_PLOTS)
    assert table_value(md, "empty texts").startswith("1 ")
    assert "row 4" in table_value(md, "empty texts")
    assert table_value(md, "duplicate ids").startswith(
        "2 (rows that share an id and its text are one"
    )
    assert table_value(md, "duplicate texts").startswith("2 ")
    assert table_value(md, "labels") == "6"


def test_inspect_says_when_every_row_has_exactly_one_label(tmp_path):
    from mlabel.reports.profile import inspect_tables

    one = pd.DataFrame({"text": ["a b", "c d", "e f"], "topic": ["x", "y", "x"]})
    two = one.assign(topic=["x|y", "y", "x"])
    per_row = [
        {
            r[0]: r[1]
            for r in inspect_tables(profile_table(df, ["text"], labels_col="topic"))[0].rows
        }
        for df in (one, two)
    ]
    assert per_row[0]["labels per row (mean)"] == (
        "1.00 (one on every row: classes; `thresholds auto` tries the best label alone first)"
    )
    assert per_row[1]["labels per row (mean)"] == "1.33"
    # inspect finds a lone column of names without --labels-col, as train does, and says that
    # rows of one label that repeat a text are read as one text with both (no "classes" note)
    four = pd.concat([one, one.assign(topic=["y", "x", "y"])])
    with pytest.warns(UserWarning, match="6 rows of one label each hold 3 texts"):
        long = profile_table(four, ["text"])
    assert long.labels == ["x", "y"]
    assert dict(inspect_tables(long)[0].rows)["labels per row (mean)"] == (
        "1.00 (2.00 per text: training reads the rows as 3 texts, each with the labels of all "
        "its rows)"
    )


def test_inspect_without_labels(small_csv, tmp_path, capsys):
    df = pd.read_csv(small_csv, dtype={"ID": str})[["ID", "TITLE", "ABSTRACT"]]
    parquet = tmp_path / "texts.parquet"
    df.to_parquet(parquet)
    out = tmp_path / "inspect"
    args = ["inspect", str(parquet), "--text-cols", "TITLE", "ABSTRACT", "--out", str(out)]
    assert main(args) == 0
    md = assert_report(out, {"length_words.png", "length_tokens.png"})
    assert "none (length statistics only)" in md
    # --no-labels on labelled data gives the same lengths
    profile = profile_table(small_csv, ["TITLE", "ABSTRACT"], with_labels=False)
    assert profile.y is None
    assert f"--max-len {profile.suggested_max_len}:" in md
    # a leftover text column is not silently taken for labels
    assert main(["inspect", str(parquet), "--text-cols", "ABSTRACT"]) == 2
    assert "--no-labels" in capsys.readouterr().err
    # and --no-labels is what makes that table inspectable
    assert main(["inspect", str(parquet), "--text-cols", "ABSTRACT", "--no-labels"]) == 0
    # like train, inspect reads a column named `text` when no --text-cols is given
    df.rename(columns={"ABSTRACT": "text"}).drop(columns="TITLE").to_parquet(parquet)
    assert main(["inspect", str(parquet), "--no-labels"]) == 0
    assert re.search(r"│ text columns +│ text +│", capsys.readouterr().out)


def test_suggested_max_len_covers_95_percent(small_csv):
    profile = profile_table(small_csv, ["TITLE", "ABSTRACT"])
    tokens = profile.tokens[~profile.empty]
    cut = profile.suggested_max_len
    assert (tokens <= cut).mean() >= 0.95 > (tokens <= cut - 1).mean()
    assert profile.y.shape == (len(tokens), 6)


def test_tokens_are_counted_a_bounded_block_of_text_at_a_time(tiny_encoder, monkeypatch):
    """Whole documents make the tokenizer's lists large (2,000 of 5,000 words: 5.8 GiB in one
    call); blocks of at most CHARS_PER_CALL characters count the same."""
    from mlabel import encoding
    from mlabel.encoding import load_tokenizer
    from mlabel.reports import profile

    tokenizer = load_tokenizer(tiny_encoder)
    texts = [f"word{i} \U0001f436 " * (i % 50) + "end" for i in range(200)]
    whole = profile.token_counts(tokenizer, texts)
    calls = []

    def counting(block, **kwargs):
        calls.append(sum(map(len, block)))
        return tokenizer(block, **kwargs)

    counting.unk_token_id = tokenizer.unk_token_id
    monkeypatch.setattr(encoding, "CHARS_PER_CALL", 1000)
    blocks = profile.token_counts(counting, texts)
    assert len(calls) > 10 and max(calls) <= 1000
    assert blocks.tokens.tolist() == whole.tokens.tolist()
    assert blocks.unread.tolist() == whole.unread.tolist() and whole.unread.sum() > 0
    assert blocks.pieces == whole.pieces == {"\U0001f436": whole.unread.sum()}


def test_inspect_names_what_the_tokenizer_cannot_read(tiny_encoder, tmp_path, capsys):
    """Emoji outside the vocabulary become [UNK]: inspect counts those texts and names the
    pieces, which the encoder never sees."""
    texts = ["so happy \U0001f436 \U0001f436 today", "plain words only", "sad \U0001f436", "ok"]
    path = tmp_path / "tweets.csv"
    label = "[b]joy[/b]"  # printed as it is, not as rich markup
    tex = "$\\foo$-modules"  # drawn as it is in the plots: matplotlib's TeX parser failed on it
    frame = {"ID": list("abcd"), "text": texts, label: [1, 0, 0, 1], tex: [0, 1, 1, 0]}
    pd.DataFrame(frame).to_csv(path, index=False)
    profile = profile_table(path, ["text"], model=tiny_encoder)
    assert profile.unread.tolist() == [2, 0, 1, 0]
    assert profile.unread_pieces == {"\U0001f436": 3}
    out = tmp_path / "inspect"
    assert (
        main(["inspect", str(path), "--text-cols", "text", "--model", tiny_encoder, "-o", str(out)])
        == 0
    )
    cell = table_value(
        (out / "report.md").read_text(), f"texts with unknown tokens ({tiny_encoder})"
    )
    hint = "`train --spell-symbols` reads such symbols as their names"
    assert cell == f"2 (50.0%): row 1, 3; most often '\U0001f436' x3; {hint}"
    assert label in capsys.readouterr().out


@pytest.fixture(scope="module")
def evaluation(trained_tiny, small_csv):
    return evaluate_model(trained_tiny, small_csv)


def test_evaluate_report_matches_metrics(trained_tiny, small_csv, evaluation, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", str(trained_tiny), str(small_csv), "--report", str(out)]) == 0
    assert "report written to" in capsys.readouterr().out
    md = assert_report(out, EVALUATE_PLOTS)
    m = evaluation.metrics
    assert table_value(md, "micro-F1") == f"{m['micro_f1']:.4f}"
    assert table_value(md, "macro-F1") == f"{m['macro_f1']:.4f}"
    assert table_value(md, "Hamming loss") == f"{m['hamming_loss']:.4f}"
    for label, s in m["per_label"].items():
        row = re.search(
            rf"^\| {label} \| [0-9.]+ \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", md, re.M
        )
        assert row.groups() == (f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}")
    assert "Most confident false positives" in md and "Most confident false negatives" in md


def test_worst_errors_are_the_most_confident(evaluation, tmp_path):
    _, _, false_pos, false_neg = evaluation_tables(evaluation, n_errors=3)
    y, probs = evaluation.examples.y > 0, evaluation.probs
    pred = evaluation.y_pred > 0
    for table, mask, pick in ((false_pos, ~y & pred, np.max), (false_neg, y & ~pred, np.min)):
        assert len(table.rows) == min(3, mask.sum())
        if table.rows:
            assert table.rows[0][2] == f"{pick(probs[mask]):.3f}"
    assert find_metrics_jsonl(tmp_path / "model") is None


def test_plot_training_curves(tmp_path):
    records = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "micro_f1": 0.5 + e / 10}
        for e in (1, 2, 3)
    ]
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert_png(plot_training_curves(jsonl, tmp_path / "training_curves.png"))


def test_label_colors_are_distinct_for_27_labels():
    colors = label_colors(27)
    assert len(set(colors)) == 27
    assert label_colors(6) == label_colors(6)
    assert np.all(np.array(colors) <= 1)
