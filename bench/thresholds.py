"""Which decision rule wins on unseen rows: each threshold method, tuned on a validation split,
scored on a test split that no choice has seen, on several real label sets.

    .venv/bin/python bench/thresholds.py [--seeds 3]

Probabilities come from the TF-IDF + logistic-regression model (seconds to train), so this
measures the rules, not the encoder: per dataset and seed, the rows are split 80/20 into
train and test (iterative stratification), the train part 85/15 into fit and validation (the
default `val_frac`); every method is tuned on the validation rows and scored on the test rows.
Datasets: arXiv (6 topics, long abstracts), SemEval-2018 E-c (11 emotions, tweets, 143 without
a label), and two small-data settings: 400 tweets, and 300 abstracts (rare topics keep a few
positives). `auto` is `thresholds: auto` (mlabel.selection.choose_rule: it picks a rule on the
validation rows). Prints micro-F1 / macro-F1 per method and dataset (mean over seeds), what
`auto` chose, and each method's mean rank over all datasets and seeds.
"""

from __future__ import annotations

import argparse
import time

import benchkit
import numpy as np
import pandas as pd
from benchkit import ROOT, TEXT_COLS
from scipy.stats import rankdata

from mlabel.baseline import TfidfModel
from mlabel.data import Examples, load_examples
from mlabel.decision import DecisionRule, decide
from mlabel.metrics import multilabel_metrics, tune_thresholds
from mlabel.selection import choose_rule, label_less_share
from mlabel.split import split_examples

SEMEVAL = ROOT.parent / "shared" / "data" / "semeval_ec.tsv"
METHODS = ("fixed:0.5", "global", "per-label", "shrunk", "auto")


def datasets() -> dict[str, Examples]:
    arxiv = load_examples(benchkit.arxiv(), TEXT_COLS)
    tweets = load_examples(pd.read_csv(SEMEVAL, sep="\t", dtype={"ID": str}), ["Tweet"])
    return {
        "arxiv": arxiv,
        "semeval": tweets,
        "semeval-400": tweets.subset(np.arange(500)),
        "arxiv-300": arxiv.subset(np.arange(375)),
    }


def scores(ex: Examples, seed: int) -> tuple[dict[str, tuple[float, float]], str]:
    """(micro-F1, macro-F1) on the test split of each method tuned on the validation split, and
    the rule `auto` chose."""
    rest, test = split_examples(ex, 0.2, seed)
    fit, val = split_examples(rest, 0.15, seed)
    model = TfidfModel().fit(fit.texts, fit.y)
    val_p, test_p = model.predict_proba(val.texts), model.predict_proba(test.texts)
    out = {}
    for method in METHODS[:-1]:
        cuts = tune_thresholds(val.y, val_p, method)
        m = multilabel_metrics(test.y, decide(test_p, cuts), ex.labels)
        out[method] = (m["micro_f1"], m["macro_f1"])
    choice = choose_rule(val.y, val_p, DecisionRule(), label_less=label_less_share(fit.y))
    m = multilabel_metrics(test.y, decide(test_p, choice.thresholds, choice.rule), ex.labels)
    out["auto"] = (m["micro_f1"], m["macro_f1"])
    return out, choice.method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(benchkit.machine())
    ranks: dict[str, list[float]] = {m: [] for m in METHODS}
    for name, ex in datasets().items():
        t0 = time.perf_counter()
        print(f"{name}: {len(ex)} rows, {len(ex.labels)} labels")
        runs, chosen = zip(*(scores(ex, seed) for seed in range(args.seeds)))
        for run in runs:  # tied methods share their mean rank (auto often ties what it chose)
            for m, rank in zip(METHODS, rankdata([-sum(run[m]) for m in METHODS])):
                ranks[m].append(rank)
        for m in METHODS:
            micro, macro = np.mean([r[m] for r in runs], axis=0)
            print(f"  {m:<10} micro-F1 {micro:.3f}  macro-F1 {macro:.3f}")
        print(f"  auto chose: {', '.join(chosen)}")
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    print("mean rank by micro+macro over datasets and seeds (1 = best):")
    for m in sorted(METHODS, key=lambda m: np.mean(ranks[m])):
        print(f"  {m:<10} {np.mean(ranks[m]):.2f}")


if __name__ == "__main__":
    main()
