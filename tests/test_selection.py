import numpy as np
import pytest

from mlabel import selection
from mlabel.decision import DecisionRule, decide
from mlabel.metrics import micro_f1, rule_scores, tune_thresholds
from mlabel.selection import (
    BEST_ALONE,
    RULE_METHODS,
    RuleChoice,
    blend_weights,
    choose_rule,
    tuned_rule,
)


def labelled(n: int, n_labels: int, rate: float, seed: int) -> np.ndarray:
    """Random 0/1 labels, every row with at least one unless `rate` leaves it empty on purpose."""
    return (np.random.default_rng(seed).random((n, n_labels)) < rate).astype(np.int8)


def scores_for(y: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Probabilities that separate y's positives from negatives, blurred by `noise`."""
    rng = np.random.default_rng(seed)
    return np.clip(0.25 + 0.5 * y + rng.normal(0, noise, y.shape), 0.001, 0.999)


def test_blend_weights_favour_the_member_that_knows_the_labels():
    y = labelled(400, 3, 0.3, 0)
    good, poor = scores_for(y, 0.1, 1), np.random.default_rng(2).random(y.shape)
    to_encoder, to_tfidf = blend_weights(y, good, poor), blend_weights(y, poor, good)
    assert to_encoder.shape == (3,)
    assert (to_encoder > 0.7).all() and (to_tfidf < 0.3).all()
    assert ((0 <= to_encoder) & (to_encoder <= 1)).all()


def test_blend_weight_of_a_rare_label_stays_near_the_global_one():
    y = labelled(400, 3, 0.3, 0)
    y[:, 2] = 0
    y[:3, 2] = 1  # three positives: too few to trust a weight of its own
    enc, tfidf = scores_for(y, 0.1, 1), scores_for(y, 0.3, 2)
    enc[:, 2], tfidf[:, 2] = tfidf[:, 2], enc[:, 2]  # label 2 alone prefers the TF-IDF member
    w = blend_weights(y, enc, tfidf)
    assert w[2] > 0.6  # pulled toward the encoder-heavy global weight


def test_choose_rule_keeps_shrunk_cuts_unless_another_rule_wins_clearly():
    y = labelled(300, 4, 0.3, 3)
    choice = choose_rule(y, scores_for(y, 0.15, 4), DecisionRule())
    assert isinstance(choice, RuleChoice)
    assert choice.method == "auto:shrunk"
    assert choice.rule == DecisionRule()


def test_choose_rule_moves_the_cut_when_every_probability_is_low():
    # Like TF-IDF on rare labels: positives score about 0.3, under the fixed cut.
    y = labelled(600, 4, 0.3, 5)
    low = scores_for(y, 0.08, 6) * 0.5
    choice = choose_rule(y, low, DecisionRule())
    assert choice.method in ("auto:global", "auto:shrunk") and (choice.thresholds < 0.4).all()
    y_new = labelled(600, 4, 0.3, 7)
    p_new = scores_for(y_new, 0.08, 8) * 0.5
    assert micro_f1(y_new, decide(p_new, choice.thresholds, choice.rule)) > micro_f1(
        y_new, decide(p_new, 0.5)
    )


def top_label_only(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One label per row; its probability is the row's highest, but rows differ in scale, so no
    cut separates positives from negatives."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 5), dtype=np.int8)
    y[np.arange(n), rng.integers(0, 5, n)] = 1
    probs = rng.uniform(0.0, 0.4, y.shape) + y * 0.5
    return y, probs * rng.uniform(0.1, 1.0, (n, 1))


def test_choose_rule_adds_at_least_one_label_where_every_row_has_one():
    y, probs = top_label_only(400, 9)
    choice = choose_rule(y, probs, DecisionRule(top_k=3))
    assert choice.method.endswith("+min1")
    assert choice.rule == DecisionRule(top_k=3, min_labels=1)


def test_choose_rule_gives_the_best_label_alone_where_every_training_row_has_one():
    """Classes rather than tags: the best label alone is the data's own form, preferred first;
    a training row with two labels, or a rule the user set, leaves it out."""
    y, probs = top_label_only(400, 9)
    choice = choose_rule(y, probs, DecisionRule())
    assert choice.rule == BEST_ALONE and choice.method == "auto:fixed:0.5+top1"
    assert (choice.thresholds == 0.5).all()
    assert (decide(probs, choice.thresholds, choice.rule).sum(axis=1) == 1).all()
    two = y.copy()
    two[0] = 1
    assert choose_rule(y, probs, DecisionRule(), train_y=two).rule != BEST_ALONE
    assert choose_rule(y, probs, DecisionRule(top_k=3)).rule != BEST_ALONE


def test_choose_rule_forces_no_label_where_label_less_rows_are_common():
    y, probs = top_label_only(400, 9)
    y[::10] = 0  # one row in ten carries no label, as SemEval's label-less tweets
    choice = choose_rule(y, probs, DecisionRule())
    assert choice.rule.min_labels == 0 and "+min1" not in choice.method


def test_choose_rule_keeps_a_minimum_the_user_set():
    y, probs = top_label_only(200, 10)
    choice = choose_rule(y, probs, DecisionRule(top_k=2, min_labels=2))
    assert choice.rule == DecisionRule(top_k=2, min_labels=2)
    assert "+min1" not in choice.method


def test_choose_rule_on_one_row_keeps_the_preferred_rule():
    # No resample leaves a row out to score on.
    choice = choose_rule(np.ones((1, 3), dtype=np.int8), np.full((1, 3), 0.2), DecisionRule())
    assert choice.method == "auto:shrunk"


def test_choose_rule_reads_label_less_rows_from_the_training_labels_when_given():
    y, probs = top_label_only(400, 9)  # every validation row has a label, by chance
    train_y = y.copy()
    train_y[::30] = 0  # 3% of the training rows carry none
    choice = choose_rule(y, probs, DecisionRule(), train_y=train_y)
    assert choice.rule.min_labels == 0


def test_tuned_rule_applies_a_named_method_with_the_rule_as_given():
    y, probs = top_label_only(200, 11)
    rule = DecisionRule(top_k=2)
    choice = tuned_rule(y, probs, "global", rule)
    assert choice.method == "global" and choice.rule == rule
    assert np.allclose(choice.thresholds, tune_thresholds(y, rule_scores(probs, rule), "global"))


def copied_rows_scores(y, probs, candidates, rng):
    """The former `_out_of_bag_scores`: each resample's drawn and held rows copied, tuned and
    decided on the full matrices (the reference)."""
    n = len(y)
    scored = {rule: rule_scores(probs, rule) for _, rule in candidates}
    resamples = int(np.clip(selection.RESAMPLED_CELLS // max(probs.size, 1), *selection.RESAMPLES))
    out = np.full((len(candidates), resamples), np.nan)
    for b in range(resamples):
        drawn = rng.integers(0, n, n)
        held = np.setdiff1d(np.arange(n), drawn)
        if held.size == 0:
            continue
        for c, (method, rule) in enumerate(candidates):
            cuts = tune_thresholds(y[drawn], scored[rule][drawn], method)
            hits = decide(probs[held], cuts, rule).astype(bool)
            truth = y[held]
            tp, fp, fn = (truth & hits).sum(0), (~truth & hits).sum(0), (truth & ~hits).sum(0)
            denominator = 2 * tp + fp + fn
            per_label = np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
            out[c, b] = (2 * tp.sum() / max(denominator.sum(), 1) + per_label.mean()) / 2
    return out


@pytest.mark.parametrize("seed", range(4))
def test_resamples_weighted_by_draws_score_as_copied_rows(seed):
    """Resamples score the candidates over the cells a cut can turn on, rows weighted by their
    draws: the scores are those of copying the drawn and held rows (every rule, ties, NaN)."""
    rng = np.random.default_rng(seed)
    n, width = int(rng.integers(2, 60)), int(rng.integers(1, 30))
    y = rng.random((n, width)) < 0.2
    probs = np.round(rng.random((n, width)) ** 3, 2)  # many ties, many under the grid
    probs[0, 0] = np.nan if seed == 3 else probs[0, 0]
    candidates = [
        (m, r) for r in (DecisionRule(), DecisionRule(min_labels=1)) for m in RULE_METHODS
    ]
    candidates += [("fixed:0.5", BEST_ALONE), ("per-label", DecisionRule(top_k=2))]
    got = selection._out_of_bag_scores(y, probs, candidates, np.random.default_rng(seed))
    want = copied_rows_scores(y, probs, candidates, np.random.default_rng(seed))
    np.testing.assert_array_equal(got, want)
