"""Subject indexing at scale: the validation split and the TF-IDF member's fit on a corpus of
tens of thousands of texts and subjects, against what mlabel did before, in the same run.

    .venv/bin/python bench/subjects_scale.py [--rows 60000] [--subjects 20000]
        [--iterstrat-rows 3000] [--tfidf-labels 320] [--val-rows 3000]

The corpus is synthetic (no real one of that size ships): each text holds 2-4 of the 4 marker
words of each of its 1-6 subjects, drawn by a Zipf law as library subjects are (a few frequent,
a long tail), among 25 random words of a 30,000-word vocabulary.

1. The split's stratification against iterstrat's `MultilabelStratifiedShuffleSplit`, which
   mlabel called before, on the first `--iterstrat-rows` texts (iterstrat recounts a dense rows
   x subjects matrix per subject it places: on all rows it would take hours): seconds, ratio,
   and whether both drew the same validation rows.
2. mlabel's whole split (`split_examples`: stratification, exact size, every subject with two
   or more positives on both sides where a swap allows) on all rows.
3. The TF-IDF member's logistic regressions for `--tfidf-labels` subjects on all rows, in one
   process (as before) and on one process per core: seconds, ratio, identical weights.
4. Choosing the decision rule (`thresholds auto`, every epoch) on `--val-rows` validation rows
   x every subject: the bootstrap's scores as mlabel computes them (rows weighted by their
   draws, cells a cut can turn on) against copying the drawn and held rows, as it did before
   (`copied_rows_scores`, the reference of tests/test_selection.py): seconds, ratio, same
   scores. The probabilities are drawn, not a model's: a positive's uniform, a negative's
   0.3 u^40 (4% of the cells at 0.05 or more; a trained model's are mostly far lower).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from benchkit import machine
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from joblib import cpu_count
from scipy import sparse

from mlabel import selection
from mlabel.baseline import TfidfModel, _make_vectorizer
from mlabel.data import Examples
from mlabel.decision import DecisionRule
from mlabel.split import split_examples, stratified_folds

VAL_FRAC = 0.15


def corpus(rows: int, subjects: int) -> tuple[list[str], sparse.csr_matrix]:
    rng = np.random.default_rng(0)
    markers = rng.integers(0, 30_000, size=(subjects, 4))
    weights = 1 / np.arange(1, subjects + 1) ** 0.9
    drawn = [
        np.unique(rng.choice(subjects, size=rng.integers(1, 7), p=weights / weights.sum()))
        for _ in range(rows)
    ]
    texts = []
    for held in drawn:
        words = [w for s in held for w in markers[s][: rng.integers(2, 5)]]
        words += list(rng.integers(0, 30_000, size=25))
        rng.shuffle(words)
        texts.append(" ".join(f"w{w}" for w in words))
    indices = np.concatenate(drawn)
    indptr = np.concatenate([[0], np.cumsum([len(d) for d in drawn])])
    y = sparse.csr_matrix((np.ones(len(indices), np.int8), indices, indptr), (rows, subjects))
    return texts, y[:, np.flatnonzero(np.asarray(y.sum(axis=0)).ravel())]  # subjects in use


def timed(run):
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def stratification(y: sparse.csr_matrix) -> None:
    n_val = round(y.shape[0] * VAL_FRAC)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=0)
    dense = y.toarray()
    old, (_, want) = timed(lambda: next(splitter.split(np.zeros(y.shape[0]), dense)))
    new, side = timed(lambda: stratified_folds(y, n_val, 0))
    same = np.array_equal(np.flatnonzero(side == 1), want)
    print(
        f"stratification, {y.shape[0]:,} rows x {y.shape[1]:,} subjects: iterstrat {old:.1f} s, "
        f"mlabel {new:.2f} s, same validation rows: {same}"
    )
    print(f"stratification speedup: {old / new:.1f}", flush=True)


def whole_split(texts: list[str], y: sparse.csr_matrix) -> None:
    ids = [str(i) for i in range(len(texts))]
    labels = [f"s{j}" for j in range(y.shape[1])]
    ex = Examples(ids, texts, labels, y.toarray().astype(np.float32), "synthetic")
    seconds, (train, val) = timed(lambda: split_examples(ex, VAL_FRAC, seed=0))
    repeated = ex.y.sum(axis=0) >= 2
    both = ((train.y.sum(axis=0) > 0) & (val.y.sum(axis=0) > 0))[repeated].mean()
    print(
        f"split, {len(texts):,} rows x {y.shape[1]:,} subjects: {seconds:.1f} s "
        f"({len(train):,} / {len(val):,} rows; subjects with 2+ positives on both sides: "
        f"{both:.1%})",
        flush=True,
    )


def tfidf(texts: list[str], y: sparse.csr_matrix, count: int) -> None:
    model = TfidfModel()
    features = _make_vectorizer(min_df=2, max_features=model._terms(y.shape[1])).fit_transform(
        texts
    )
    picked = np.random.default_rng(0).choice(y.shape[1], size=count, replace=False)
    targets = y[:, np.sort(picked)].toarray()
    cores = cpu_count(only_physical_cores=True)
    one, (coef1, b1) = timed(lambda: TfidfModel(workers=1)._fit_labels(features, targets))
    many, (coef, b) = timed(lambda: TfidfModel(workers=cores)._fit_labels(features, targets))
    same = np.array_equal(coef1, coef) and np.array_equal(b1, b)
    print(
        f"TF-IDF member, {count} subjects x {features.shape[1]:,} terms x {len(texts):,} texts: "
        f"1 process {one:.1f} s, {cores} processes {many:.1f} s, identical weights: {same}"
    )
    print(f"TF-IDF speedup: {one / many:.2f}", flush=True)


def rule_choice(y: sparse.csr_matrix, rows: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_selection import copied_rows_scores

    truth = y[:rows].toarray().astype(bool)
    rng = np.random.default_rng(1)
    probs = 0.3 * rng.random(truth.shape) ** 40
    probs[truth] = rng.random(truth.sum())
    candidates = selection._candidates(DecisionRule(), truth)
    old, want = timed(
        lambda: copied_rows_scores(truth, probs, candidates, np.random.default_rng(0))
    )
    run = selection._out_of_bag_scores
    new, got = timed(lambda: run(truth, probs, candidates, np.random.default_rng(0)))
    same = np.array_equal(got, want, equal_nan=True)
    print(
        f"rule choice, {rows:,} validation rows x {y.shape[1]:,} subjects, {len(candidates)} "
        f"candidates x {got.shape[1]} resamples: copied rows {old:.1f} s, weighted rows "
        f"{new:.1f} s, same scores: {same}"
    )
    print(f"rule choice speedup: {old / new:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--iterstrat-rows", type=int, default=3_000)
    parser.add_argument("--tfidf-labels", type=int, default=320)
    parser.add_argument("--val-rows", type=int, default=3_000)
    args = parser.parse_args()
    print(machine(), flush=True)
    texts, y = corpus(args.rows, args.subjects)
    print(
        f"corpus: {len(texts):,} texts, {y.shape[1]:,} subjects in use, "
        f"{y.nnz / len(texts):.2f} per text",
        flush=True,
    )
    small = y[: args.iterstrat_rows]
    stratification(small[:, np.flatnonzero(np.asarray(small.sum(axis=0)).ravel())])
    whole_split(texts, y)
    tfidf(texts, y, args.tfidf_labels)
    rule_choice(y, args.val_rows)


if __name__ == "__main__":
    main()
