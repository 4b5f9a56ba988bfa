"""Thousands of labels: threshold tuning, reports and printing stay linear in the label count."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from scipy import sparse

from mlabel.metrics import THRESHOLD_GRID, _f1, _hits, f1_by_threshold, tune_thresholds

N_LABELS = 2000


@pytest.fixture(scope="module")
def many():
    """(y, probs) of 400 rows and 2,000 labels, a few labels per row, probabilities on the grid
    points too (ties are where a vectorised count could be off by one)."""
    rng = np.random.default_rng(0)
    y = rng.random((400, N_LABELS)) < 4 / N_LABELS
    probs = np.where(y, rng.random(y.shape) * 0.6 + 0.3, rng.random(y.shape) ** 6)
    probs[:, ::7] = np.round(probs[:, ::7], 2)
    return y, probs.astype(np.float32)


def test_f1_by_threshold_matches_a_pass_per_threshold_at_many_labels(many):
    y, probs = many
    micro, per_label = f1_by_threshold(y, probs)
    for g in (0, 25, 45, 90):
        tp, fp, fn = _hits(y, probs >= THRESHOLD_GRID[g]).sum(axis=1)
        assert np.allclose(per_label[:, g], _f1(tp, fp, fn))
        assert micro[g] == pytest.approx(float(_f1(tp.sum(), fp.sum(), fn.sum())))


def test_threshold_tuning_at_many_labels_takes_well_under_a_second(many):
    y, probs = many
    start = time.perf_counter()
    cuts = tune_thresholds(y, probs, "shrunk")
    # 5,000 labels x 1,000 rows took 10-12 s with one pass per grid point; now under 1 s.
    assert time.perf_counter() - start < 1.5
    assert cuts.shape == (N_LABELS,) and np.all((cuts >= 0.05) & (cuts <= 0.95))


def fake_evaluation(y: np.ndarray, probs: np.ndarray, tmp_path):
    """What `write_evaluation_report` reads of an Evaluation, without a model behind it."""
    from types import SimpleNamespace

    from mlabel.data import Examples
    from mlabel.decision import DecisionRule
    from mlabel.metrics import multilabel_metrics, ranking_metrics

    labels = [f"label {j}" for j in range(y.shape[1])]
    thresholds = np.full(y.shape[1], 0.5)
    y_pred = probs >= thresholds
    metrics = multilabel_metrics(y, y_pred, labels) | ranking_metrics(y, probs)
    texts = [f"text {i}" for i in range(len(y))]
    return SimpleNamespace(
        examples=Examples(texts, texts, labels, y.astype(np.float32), "x.csv"),
        probs=probs,
        thresholds=thresholds,
        y_pred=y_pred,
        metrics=metrics,
        rule=DecisionRule(),
        predictor=SimpleNamespace(
            labels=labels,
            model_dir=tmp_path / "model",
            engine="torch",
            info=SimpleNamespace(threshold_method="fixed"),
        ),
    )


def png_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def test_evaluation_report_at_many_labels_shows_frequent_worst_and_best(
    many, tmp_path, monkeypatch
):
    from mlabel.reports import evaluation
    from mlabel.reports.evaluation import (
        MANY_LABELS,
        evaluation_tables,
        write_evaluation_report,
    )

    SHOW_EACH = 3  # 9 panels per plot: matplotlib takes seconds per dozen panels
    monkeypatch.setattr(evaluation, "SHOW_EACH", SHOW_EACH)
    y, probs = many
    result = fake_evaluation(y, probs, tmp_path)
    page = write_evaluation_report(result, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    per_label = result.metrics["per_label"]
    f1 = {name: s["f1"] for name, s in per_label.items() if s["support"]}
    tables = {table.title: table for table in evaluation_tables(result)}
    assert f"The {SHOW_EACH} most frequent labels (of {N_LABELS})" in tables
    for title, want in (("lowest F1", min(f1.values())), ("highest F1", max(f1.values()))):
        table = tables[f"The {SHOW_EACH} {title} (labels with positives)"]
        assert table.rows[0][4] == f"{want:.3f}" and f"**{table.title}**" in md
    for row in tables[f"The {SHOW_EACH} most frequent labels (of {N_LABELS})"].rows:
        tp, fp, fn = map(int, row[-3:])
        assert tp + fn == per_label[row[0]]["support"]
        assert tp + fp == int(result.y_pred[:, int(row[0].split()[1])].sum())
    assert len(re.findall(r"^\| label \d+ \|", md, re.M)) == 3 * SHOW_EACH  # not 2,000 rows
    assert N_LABELS > MANY_LABELS and page.stat().st_size < 3_000_000
    for name in ("confusion_matrices.png", "pr_curves.png", "f1_threshold_per_label.png"):
        assert max(png_size(tmp_path / "report" / name)) < 4000


def test_inspect_report_at_many_labels_caps_tables_and_plots(many, tmp_path, monkeypatch):
    from mlabel.reports import profile as module
    from mlabel.reports.profile import (
        DataProfile,
        inspect_tables,
        label_pairs,
        write_inspect_report,
    )

    SHOWN_LABELS, COOCCURRING = 12, 6  # fewer bars and cells: the same code, faster plots
    monkeypatch.setattr(module, "SHOWN_LABELS", SHOWN_LABELS)
    monkeypatch.setattr(module, "COOCCURRING", COOCCURRING)

    y = many[0].astype(np.float32)
    y[:, :30] = np.random.default_rng(1).random((len(y), 30)) < 0.2  # some frequent labels
    n = len(y)
    texts = [f"text {i % 390}" for i in range(n)]  # 10 duplicated texts
    profile = DataProfile(
        source="x.csv",
        text_cols=["text"],
        texts=texts,
        empty=np.zeros(n, dtype=bool),
        duplicate_texts=10,
        duplicate_ids=None,
        words=np.full(n, 12),
        tokens=np.arange(n) % 300 + 5,
        tokenizer="tiny",
        model_max_len=512,
        labels=[f"label {j}" for j in range(N_LABELS)],
        y=y,
    )
    overview, lengths, counts, per_row, pairs = inspect_tables(profile)
    assert len(counts.rows) == SHOWN_LABELS and f"of {N_LABELS} labels" in counts.title
    dense = y.T.astype(int) @ y.astype(int)
    first, second, both = label_pairs(y)
    assert np.all(first < second) and np.array_equal(dense[first, second], both)
    assert both.sum() == np.triu(dense, 1).sum()
    assert int(pairs.rows[0][2]) == np.triu(dense, 1).max()
    write_inspect_report(profile, tmp_path / "inspect")
    folder = tmp_path / "inspect"
    assert max(png_size(folder / "label_cooccurrence.png")) < 200 * COOCCURRING
    for name in ("label_frequencies.png", "length_by_label.png"):
        assert max(png_size(folder / name)) < 4000


def test_predict_text_prints_the_best_labels_and_every_tag(capsys):
    from types import SimpleNamespace

    from mlabel.cli.predict_cmd import SHOWN_PROBS, _show

    probs = np.linspace(0.9, 0.0, N_LABELS)[None]
    hits = probs >= 0.6
    hits[0, -1] = True  # a tag far down the ranking (its own threshold is low)
    labels = [f"label {j}" for j in range(N_LABELS)]
    preds = SimpleNamespace(
        probs=probs, hits=hits, label_lists=lambda: [[labels[j] for j in np.flatnonzero(hits[0])]]
    )
    predictor = SimpleNamespace(labels=labels, run=lambda *args: preds)
    _show(predictor, ["1"], ["a text"], None, None)
    lines = capsys.readouterr().out.splitlines()
    marked = [line for line in lines if line.startswith("   *")]
    assert len(marked) == hits.sum() and f"label {N_LABELS - 1}" in marked[-1]
    shown = max(SHOWN_PROBS, hits[0, :-1].sum()) + 1
    assert len(lines) == 2 + shown + 1
    assert lines[-1].strip().startswith(f"... {N_LABELS - shown} more labels, each at most")


def recounting_cover(y: np.ndarray, train: list[int], val: list[int]) -> None:
    """The former `_cover_labels`: each side's counts recounted for every label (the reference)."""
    for j in np.argsort(y.sum(axis=0), kind="stable"):
        if y[:, j].sum() < 2:
            continue
        for src, dst in ((train, val), (val, train)):
            if y[dst, j].any():
                continue
            src_counts, dst_counts = y[src].sum(axis=0), y[dst].sum(axis=0)
            swap = next(
                (
                    (a, b)
                    for a in sorted(src, key=lambda r: y[r].sum())
                    if y[a, j] and not np.any((y[a] > 0) & (src_counts < 2))
                    for b in sorted(dst, key=lambda r: y[r].sum())
                    if not np.any((y[b] > 0) & (dst_counts + y[a] - y[b] < 1) & (dst_counts > 0))
                ),
                None,
            )
            if swap:
                src[src.index(swap[0])], dst[dst.index(swap[1])] = swap[1], swap[0]


def test_covering_labels_in_a_split_at_many_labels_matches_recounting():
    from mlabel.split import _cover_labels

    rng = np.random.default_rng(2)
    y = (rng.random((300, N_LABELS)) < 3 / N_LABELS).astype(np.float32)
    y[np.arange(300), rng.integers(0, 40, 300)] = 1  # a few frequent labels
    y[:20, 1990:] = 1  # rows that can move: labels with many positives only
    start = time.perf_counter()
    train, val = _cover_labels(sparse.csr_matrix(y), list(range(255)), list(range(255, 300)))
    # Recounting each side per label took 72 s at 5,000 labels x 1,000 rows; now 2 s.
    assert time.perf_counter() - start < 5
    want = list(range(255)), list(range(255, 300))
    recounting_cover(y, *want)
    assert (train, val) == want and sorted(train + val) == list(range(300))
    assert train != list(range(255))  # rows did move


def test_labels_without_positives_are_counted_not_all_named():
    from mlabel.data import SHOW_NAMES, _warn_labels_without_positives

    labels = [f"label {j}" for j in range(N_LABELS)]
    with pytest.warns(UserWarning) as caught:
        _warn_labels_without_positives(np.zeros((3, N_LABELS)), labels, "test.csv")
    message = str(caught[0].message)
    assert message.count("'label ") == SHOW_NAMES
    assert message.endswith(f"and {N_LABELS - SHOW_NAMES} more")


def test_evaluate_text_lists_the_most_frequent_labels_with_averages_over_all(many, tmp_path):
    from mlabel.evaluation import SHOWN_LABELS, format_evaluation
    from mlabel.metrics import classification_report_text

    y, probs = many
    result = fake_evaluation(y, probs, tmp_path)
    text = format_evaluation(result)
    assert f"the {SHOWN_LABELS} most frequent of {N_LABELS} labels" in text
    assert len(text.splitlines()) < 3 * SHOWN_LABELS
    full = classification_report_text(y, result.y_pred, result.predictor.labels)
    averages = full.split("\n\n")[-1]  # micro, macro, weighted, samples: over every label
    assert averages.strip() and averages in text
    top = result.predictor.labels[int(np.argmax(y.sum(axis=0)))]
    assert f"  {top:<32} TN" in text
