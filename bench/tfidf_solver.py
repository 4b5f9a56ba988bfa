"""TF-IDF baseline: liblinear's primal solver (scikit-learn's default, dual=False) against its
dual solver, one regression per label as `mlabel.baseline` fits them, on the shipped arXiv
abstracts: time per label and how far the two fits' logits and decisions differ.

    .venv/bin/python bench/tfidf_solver.py [--extra-labels 60]

Labels: the six arXiv topics plus `--extra-labels` rarer ones (a title holds a frequent title
word of five letters or more), so the figures cover labels with few positives, as thousands of
subjects have. Both solvers fit the same L2-regularised problem (mlabel's C and balanced class
weights); with more features than texts the dual one needs fewer passes.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from benchkit import arxiv, machine, texts_of
from sklearn.linear_model import LogisticRegression

from mlabel.baseline import TfidfModel, _make_vectorizer


def _labels(df: pd.DataFrame, extra: int) -> np.ndarray:
    topics = [df[c].to_numpy() for c in df.columns[3:9]]
    words = df["TITLE"].str.lower().str.split().explode().value_counts()
    common = [w for w in words.index if len(w) > 4][:extra]
    titles = df["TITLE"].str.lower()
    rare = [titles.str.contains(w, regex=False).to_numpy().astype(int) for w in common]
    return np.column_stack(topics + rare)


def _fit_all(x, y: np.ndarray, dual: bool) -> tuple[float, np.ndarray, int]:
    """Seconds, logits and convergence warnings of one fit per label: mlabel's settings before
    (primal, scikit-learn's 100 passes) or now (dual, up to 1,000 passes)."""
    start, logits, unconverged = time.perf_counter(), [], 0
    for j in range(y.shape[1]):
        clf = LogisticRegression(
            C=TfidfModel().C,
            class_weight="balanced",
            solver="liblinear",
            dual=dual,
            max_iter=1000 if dual else 100,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logits.append(clf.fit(x, y[:, j]).decision_function(x))
        unconverged += len(caught)
    return time.perf_counter() - start, np.array(logits), unconverged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra-labels", type=int, default=60)
    args = parser.parse_args()
    print(machine())
    df = arxiv()
    texts = texts_of(df)
    x = _make_vectorizer(min_df=2).fit_transform(texts)
    y = _labels(df, args.extra_labels)
    print(f"{x.shape[0]} texts, {x.shape[1]} terms, {y.shape[1]} labels")
    primal_s, primal, primal_warned = _fit_all(x, y, dual=False)
    dual_s, dual, dual_warned = _fit_all(x, y, dual=True)
    for name, seconds, warned in [
        ("primal (before)", primal_s, primal_warned),
        ("dual (now)", dual_s, dual_warned),
    ]:
        per_label = seconds / y.shape[1] * 1000
        print(f"{name}: {seconds:.1f} s, {per_label:.0f} ms per label, {warned} not converged")
    differ = int(((dual > 0) != (primal > 0)).sum())
    print(
        f"max |logit difference| {np.abs(dual - primal).max():.2g}; decisions that differ: {differ} of {dual.size}"
    )
    print(f"dual speedup: {primal_s / dual_s:.2f}")


if __name__ == "__main__":
    main()
