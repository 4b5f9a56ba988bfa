"""Choices made on the validation split: how much the TF-IDF member counts in the blend (per
label), and which decision rule turns probabilities into labels (a fixed cut, one global cut or
shrunk per-label cuts, each with or without "at least one label"; "the best label alone" where
every training row has one label)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mlabel.decision import DecisionRule
from mlabel.metrics import (
    THRESHOLD_GRID,
    _best_threshold,
    _smooth,
    counts_from_histogram,
    f1_by_threshold,
    fixed_cut,
    rule_scores,
    thresholds_from_counts,
    tune_thresholds,
)

WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)
WEIGHT_PRIOR = 20.0  # positives at which a label's own blend weight counts as much as the global
# Preferred first: shrunk ranked best on unseen rows (bench/thresholds.py) and already leans on
# the global cut where labels are rare; the others must beat it clearly.
RULE_METHODS = ("shrunk", "global", "fixed:0.5")
RESAMPLES = (20, 100)  # fewer on large splits: each tunes every candidate once
RESAMPLED_CELLS = 20_000_000  # (row, label) cells tuned on per candidate, over all resamples
MAX_EMPTY_FOR_MIN1 = 0.01  # "at least one label" is a candidate only where <= 1% of rows have none
BEST_ALONE = DecisionRule(top_k=1, min_labels=1)  # each text gets its best label, and only it


@dataclass(frozen=True)
class RuleChoice:
    """The chosen cuts, their name as recorded (e.g. `auto:global+min1`) and the rule to apply
    with them."""

    thresholds: np.ndarray
    method: str
    rule: DecisionRule


def blend_weights(y: np.ndarray, encoder_probs: np.ndarray, tfidf_probs: np.ndarray) -> np.ndarray:
    """The encoder's weight w per label in `w * encoder + (1 - w) * tfidf`, (L,) in [0, 1].

    Scored by the F1 the blend reaches at its best cut (smoothed F1 curves): cuts are tuned after
    blending, so what counts is how well the blend ranks, not its calibration (log-loss chose
    the worse-ranking, better-calibrated member). w_global maximises micro-F1 over all labels;
    each label's own best weight is pulled toward it by the label's positives,
    w = (n_pos * w_label + k * w_global) / (n_pos + k), so rare labels keep the global weight.
    """
    y = np.asarray(y).astype(bool)
    enc, tfidf = np.asarray(encoder_probs, float), np.asarray(tfidf_probs, float)
    micro, per_label = zip(*(_best_f1(y, w * enc + (1 - w) * tfidf) for w in WEIGHT_GRID))
    # Ties (flat stretches) go to the middle of the longest one, not to an end of the grid.
    w_global = _best_threshold(np.array(micro), WEIGHT_GRID)
    w_label = _best_threshold(np.array(per_label).T, WEIGHT_GRID)
    n_pos = y.sum(axis=0)
    return (n_pos * w_label + WEIGHT_PRIOR * w_global) / (n_pos + WEIGHT_PRIOR)


def choose_rule(
    y: np.ndarray,
    probs: np.ndarray,
    base: DecisionRule,
    *,
    train_y: np.ndarray | None = None,
    seed: int = 0,
) -> RuleChoice:
    """The decision rule for `probs`, chosen on the validation rows `y`.

    Each candidate (shrunk, global, fixed 0.5; with "at least one label" too where nearly every
    training row carries one and `base` asks for no minimum; and the best label alone where
    every training row carries exactly one and `base` sets no rule: `train_y`, by default `y`)
    is tuned on bootstrap resamples of the rows and scored by (micro-F1 + macro-F1) / 2 on the
    rows each resample left out. The pick is the first candidate within one standard error of
    the best, so a small split keeps the first (shrunk cuts, or the best label alone) unless
    another rule wins clearly. Its thresholds are then tuned on all rows.
    """
    y, probs = np.asarray(y).astype(bool), np.asarray(probs, float)
    candidates = _candidates(base, y if train_y is None else np.asarray(train_y).astype(bool))
    scores = _out_of_bag_scores(y, probs, candidates, np.random.default_rng(seed))
    method, rule = candidates[_first_within_one_se(scores)]
    cuts = tune_thresholds(y, rule_scores(probs, rule), method)
    suffix = "" if rule == base else "+top1" if rule == BEST_ALONE else "+min1"
    return RuleChoice(cuts, f"auto:{method}{suffix}", rule)


def tuned_rule(
    y: np.ndarray,
    probs: np.ndarray,
    method: str,
    base: DecisionRule,
    *,
    train_y: np.ndarray | None = None,
) -> RuleChoice:
    """Thresholds by `method` on validation rows: `auto` chooses the rule too (`choose_rule`,
    from the training labels `train_y`); any other method is tuned with `base` applied, as
    predictions will be made."""
    if method == "auto":
        return choose_rule(y, probs, base, train_y=train_y)
    return RuleChoice(tune_thresholds(y, rule_scores(probs, base), method), method, base)


def _best_f1(y: np.ndarray, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """The highest smoothed micro-F1 over the threshold grid, and each label's highest F1."""
    micro, per_label = f1_by_threshold(y, probs, THRESHOLD_GRID)
    return float(_smooth(micro).max()), _smooth(per_label).max(axis=1)


def _candidates(base: DecisionRule, train_y: np.ndarray) -> list[tuple[str, DecisionRule]]:
    """(threshold method, rule) pairs, preferred first. Rows without a label are legitimate: the
    minimum of one is tried only where they are rare and the user set no minimum. Where every
    training row has one label (classes rather than tags) and the user set no rule, the best
    label alone comes first, as the data's own form: the others must beat it clearly. Its cuts
    do not matter, so they stay at 0.5."""
    per_row = train_y.sum(axis=1)
    rules = [base]
    if base.min_labels == 0 and (per_row == 0).mean() <= MAX_EMPTY_FOR_MIN1:
        rules.append(replace(base, min_labels=1))
    candidates = [(method, rule) for rule in rules for method in RULE_METHODS]
    if base == DecisionRule() and len(per_row) and (per_row == 1).all():
        candidates.insert(0, ("fixed:0.5", BEST_ALONE))
    return candidates


def _out_of_bag_scores(
    y: np.ndarray,
    probs: np.ndarray,
    candidates: list[tuple[str, DecisionRule]],
    rng: np.random.Generator,
) -> np.ndarray:
    """(candidates, resamples) scores on the rows each resample left out; NaN where it left
    none out. A resample weighs each row by the times it was drawn, so tuning and scoring pass
    over the cells that can be on (`_Cells`), not over copies of the drawn rows."""
    n = len(y)
    cells = {rule: _Cells(y, rule_scores(probs, rule)) for _, rule in candidates}
    resamples = int(np.clip(RESAMPLED_CELLS // max(probs.size, 1), *RESAMPLES))
    out = np.full((len(candidates), resamples), np.nan)
    for b in range(resamples):
        drawn = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        held = drawn == 0
        if not held.any():
            continue
        for c, (method, rule) in enumerate(candidates):
            out[c, b] = cells[rule].held_out_f1(held, cells[rule].tuned(drawn, method))
    return out


class _Cells:
    """The (row, label) cells of a rule's scores that any cut can turn on, with their truth.

    Every cut a candidate gets lies on THRESHOLD_GRID or between its points (fixed 0.5, shrunk
    averages), so a cell scored under the grid's lowest point is never on: with thousands of
    labels nearly all cells are. Counts over the rest, weighted by rows, equal those over the
    drawn rows' copies, in a pass over far fewer cells."""

    def __init__(self, y: np.ndarray, scores: np.ndarray) -> None:
        grid = np.sort(THRESHOLD_GRID)
        self.bins, self.n_labels = len(grid) + 1, y.shape[1]
        # a hair under the lowest point: a shrunk average of it may round below it
        self.rows, self.labels = np.nonzero(scores >= grid[0] - 1e-9)
        self.scores = scores[self.rows, self.labels]
        self.truth = y[self.rows, self.labels]
        reached = np.searchsorted(grid, self.scores, side="right")  # p >= grid[g] for g < reached
        self.cell = self.labels * self.bins + reached
        self.positive_rows, self.positive_labels = np.nonzero(y)
        self.grid_order = np.argsort(np.argsort(THRESHOLD_GRID, kind="stable"))

    def _positives(self, weights: np.ndarray) -> np.ndarray:
        weights = weights[self.positive_rows]
        return np.bincount(self.positive_labels, weights=weights, minlength=self.n_labels)

    def tuned(self, weights: np.ndarray, method: str) -> np.ndarray:
        """`tune_thresholds` on the rows repeated by their weights."""
        if (cut := fixed_cut(method)) is not None:
            return np.full(self.n_labels, cut)
        size = self.n_labels * self.bins
        on = weights[self.rows]
        hist = np.stack(
            [
                np.bincount(self.cell, weights=on, minlength=size),
                np.bincount(self.cell[self.truth], weights=on[self.truth], minlength=size),
            ]
        ).reshape(2, self.n_labels, self.bins)
        n_pos = self._positives(weights)
        counts = counts_from_histogram(hist, n_pos)[:, self.grid_order]
        return thresholds_from_counts(counts, n_pos, method)

    def held_out_f1(self, held: np.ndarray, cuts: np.ndarray) -> float:
        """(micro-F1 + macro-F1) / 2 on the `held` rows with `cuts`; a label's F1 is 0 where it
        is neither true nor predicted."""
        on = held[self.rows] & (self.scores >= cuts[self.labels])
        tp = np.bincount(self.labels[on & self.truth], minlength=self.n_labels)
        fp = np.bincount(self.labels[on & ~self.truth], minlength=self.n_labels)
        fn = self._positives(held.astype(float)) - tp
        denominator = 2 * tp + fp + fn
        per_label = np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
        micro = 2 * tp.sum() / max(denominator.sum(), 1)
        return float((micro + per_label.mean()) / 2)


def _first_within_one_se(scores: np.ndarray) -> int:
    """The first candidate whose mean gap to the best is within the gap's spread over the
    resamples (the bootstrap's standard error); candidate 0 when nothing could be scored."""
    scores = scores[:, ~np.isnan(scores).any(axis=0)]
    if scores.shape[1] < 2:
        return 0
    gap = scores[scores.mean(axis=1).argmax()] - scores
    return int(np.flatnonzero(gap.mean(axis=1) <= gap.std(axis=1))[0])
