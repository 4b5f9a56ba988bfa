"""Subject indexing at scale: the validation split and the TF-IDF member's fit on a corpus of
tens of thousands of texts and subjects, against what mlabel did before, in the same run.

    .venv/bin/python bench/subjects_scale.py [--rows 60000] [--subjects 20000]
        [--iterstrat-rows 3000] [--tfidf-labels 320]

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
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchkit import machine
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from joblib import cpu_count
from scipy import sparse

from mlabel.baseline import TfidfModel, _make_vectorizer
from mlabel.data import Examples
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--iterstrat-rows", type=int, default=3_000)
    parser.add_argument("--tfidf-labels", type=int, default=320)
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


if __name__ == "__main__":
    main()
