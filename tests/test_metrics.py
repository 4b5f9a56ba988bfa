import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, label_ranking_average_precision_score, ndcg_score

import mlabel.metrics as metrics_mod
from mlabel.decision import DecisionRule, decide
from mlabel.metrics import (
    _best_threshold,
    _smooth,
    bootstrap_ci,
    classification_report_text,
    confusion_matrices,
    expected_calibration_error,
    f1_by_threshold,
    multilabel_metrics,
    ranking_metrics,
    rule_scores,
    top_labels,
    tune_thresholds,
)

LABELS = ["alpha", "beta", "gamma"]
# Columns are labels alpha, beta, gamma; rows are four documents.
Y_TRUE = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
Y_PRED = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1]])


def test_multilabel_metrics_match_hand_computed_values():
    m = multilabel_metrics(Y_TRUE, Y_PRED, LABELS)
    # alpha: tp=2 fp=1 fn=0 -> P=2/3 R=1 F1=4/5; beta: tp=1 fp=0 fn=1 -> P=1 R=1/2 F1=2/3;
    # gamma: tp=2 fp=0 fn=1 -> P=1 R=2/3 F1=4/5.
    assert m["per_label"]["alpha"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert m["per_label"]["beta"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert m["per_label"]["gamma"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    # micro: tp=5 fp=1 fn=2 -> P=5/6 R=5/7 F1=10/(10+1+2)=10/13
    assert m["micro_precision"] == pytest.approx(5 / 6)
    assert m["micro_recall"] == pytest.approx(5 / 7)
    assert m["micro_f1"] == pytest.approx(10 / 13)
    # macro: (4/5 + 2/3 + 4/5) / 3 = 34/45
    assert m["macro_f1"] == pytest.approx(34 / 45)
    # samples: rows score 2/3, 1, 2/3, 2/3 -> mean 3/4
    assert m["samples_f1"] == pytest.approx(0.75)
    # Jaccard per row: 1/2, 1, 1/2, 1/2 -> 5/8 (SemEval E-c's "accuracy")
    assert m["jaccard"] == pytest.approx(5 / 8)
    # only row 1 is exactly right; 3 of 12 cells are wrong
    assert m["subset_accuracy"] == pytest.approx(0.25)
    assert m["hamming_loss"] == pytest.approx(0.25)


def test_a_text_without_labels_given_none_counts_as_right():
    y_true = np.array([[0, 0, 0], [1, 0, 0]])
    right = multilabel_metrics(y_true, np.array([[0, 0, 0], [1, 0, 0]]), LABELS)
    wrong = multilabel_metrics(y_true, np.array([[0, 1, 0], [1, 0, 0]]), LABELS)
    assert right["samples_f1"] == right["jaccard"] == right["subset_accuracy"] == 1.0
    assert wrong["samples_f1"] == wrong["jaccard"] == 0.5


def test_macro_f1_seen_leaves_out_labels_the_table_lacks_and_none_were_given():
    y_true = np.array([[1, 0, 0], [0, 1, 0]])  # gamma is not in the table
    m = multilabel_metrics(y_true, np.array([[1, 0, 0], [0, 1, 0]]), LABELS)
    assert m["macro_f1"] == pytest.approx(2 / 3) and m["macro_f1_seen"] == 1.0
    assert m["labels_seen"] == 2
    # Given where the table lacks it, gamma is a false positive and counts again.
    m = multilabel_metrics(y_true, np.array([[1, 0, 1], [0, 1, 0]]), LABELS)
    assert m["macro_f1"] == m["macro_f1_seen"] == pytest.approx(2 / 3)
    assert m["labels_seen"] == 3
    m = multilabel_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["macro_f1_seen"] == m["macro_f1"] and m["labels_seen"] == 3


def test_multilabel_metrics_are_plain_json_types():
    m = multilabel_metrics(Y_TRUE, Y_PRED, LABELS)
    assert type(m["micro_f1"]) is float
    assert type(m["per_label"]["alpha"]["support"]) is int
    assert json.loads(json.dumps(m)) == m


def test_multilabel_metrics_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="2 label names for 3"):
        multilabel_metrics(Y_TRUE, Y_PRED, LABELS[:2])
    with pytest.raises(ValueError, match="same shape"):
        multilabel_metrics(Y_TRUE, Y_PRED[:, :2], LABELS)


def test_classification_report_names_labels():
    text = classification_report_text(Y_TRUE, Y_PRED, LABELS)
    for name in LABELS + ["micro avg", "macro avg"]:
        assert name in text


def test_the_report_samples_average_agrees_with_samples_f1():
    """A row rightly given no label scores 1 in both (sklearn's report alone would give it 0);
    the label lines keep zero_division 0: a label never predicted has precision 0."""
    y_true = np.array([[1, 0], [0, 0], [0, 0], [1, 1]])
    y_pred = np.array([[1, 0], [0, 0], [0, 0], [1, 0]])
    report = classification_report_text(y_true, y_pred, ["a", "b"])
    samples = report.splitlines()[-1].split()
    m = multilabel_metrics(y_true, y_pred, ["a", "b"])
    assert samples[:2] == ["samples", "avg"] and float(samples[4]) == round(m["samples_f1"], 3)
    assert m["samples_f1"] == pytest.approx((1 + 1 + 1 + 2 / 3) / 4)
    assert report.splitlines()[3].split()[:2] == ["b", "0.000"]


def test_confusion_matrices_are_tn_fp_fn_tp_per_label():
    cm = confusion_matrices(Y_TRUE, Y_PRED)
    assert cm.shape == (3, 2, 2)
    np.testing.assert_array_equal(cm[0], [[1, 1], [0, 2]])
    np.testing.assert_array_equal(cm[1], [[2, 0], [1, 1]])
    np.testing.assert_array_equal(cm[2], [[1, 0], [1, 2]])


def test_a_single_label_is_scored_as_one_label_not_as_two_classes():
    """sklearn reads one column as binary data, whose micro and macro averages would count the
    negatives as a class (micro-F1 would be accuracy); one label's figures are its own."""
    y_true, y_pred = np.array([[1], [1], [0], [0], [0]]), np.array([[1], [0], [1], [0], [0]])
    m = multilabel_metrics(y_true, y_pred, ["only"])
    assert m["micro_f1"] == m["macro_f1"] == m["per_label"]["only"]["f1"] == 0.5
    assert (m["micro_precision"], m["micro_recall"], m["labels_seen"]) == (0.5, 0.5, 1)
    assert m["samples_f1"] == m["jaccard"] == m["subset_accuracy"] == 0.6  # rows 1, 4 and 5
    assert m["hamming_loss"] == 0.4
    np.testing.assert_array_equal(confusion_matrices(y_true, y_pred), [[[2, 1], [1, 1]]])
    report = classification_report_text(y_true, y_pred, ["only"])
    assert len([line for line in report.splitlines() if line.strip().startswith("only")]) == 1


def separable_data() -> tuple[np.ndarray, np.ndarray]:
    """400 rows: a common label (200 positives at 0.6, negatives at 0.2) and a rare one
    (4 positives at 0.9, negatives at 0.5).

    Perfect-F1 plateaus: common 0.21..0.60 (middle 0.405), rare 0.51..0.90 (middle 0.705),
    micro-F1 over both 0.51..0.60 (middle 0.555).
    """
    y_true = np.zeros((400, 2), dtype=int)
    y_true[:200, 0] = 1
    y_true[:4, 1] = 1
    y_prob = np.where(y_true == 1, [0.6, 0.9], [0.2, 0.5])
    return y_true, y_prob


def test_f1_by_threshold_matches_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(50, 4))
    y_prob = np.clip(0.3 * y_true + rng.random((50, 4)) * 0.7, 0, 1)
    grid = np.array([0.1, 0.35, 0.5, 0.8])
    micro, per_label = f1_by_threshold(y_true, y_prob, grid)
    assert micro.shape == (4,) and per_label.shape == (4, 4)
    for g, t in enumerate(grid):
        y_pred = (y_prob >= t).astype(int)
        assert micro[g] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
        np.testing.assert_allclose(
            per_label[:, g], f1_score(y_true, y_pred, average=None, zero_division=0)
        )


def test_fixed_thresholds_parse_and_validate():
    y_true, y_prob = separable_data()
    np.testing.assert_allclose(tune_thresholds(y_true, y_prob, "fixed"), [0.5, 0.5])
    np.testing.assert_allclose(tune_thresholds(y_true, y_prob, "fixed:0.3"), [0.3, 0.3])
    with pytest.raises(ValueError, match="1.5"):
        tune_thresholds(y_true, y_prob, "fixed:1.5")
    with pytest.raises(ValueError, match="0.0"):
        tune_thresholds(y_true, y_prob, "fixed:0")
    with pytest.raises(ValueError, match="'abc' is not a number"):
        tune_thresholds(y_true, y_prob, "fixed:abc")


def test_unknown_method_lists_valid_ones():
    y_true, y_prob = separable_data()
    with pytest.raises(ValueError, match="'banana'.*global, per-label, shrunk"):
        tune_thresholds(y_true, y_prob, "banana")


def test_global_threshold_is_middle_of_best_micro_f1_plateau():
    y_true, y_prob = separable_data()
    np.testing.assert_allclose(tune_thresholds(y_true, y_prob, "global"), [0.555, 0.555])


def test_per_label_finds_each_labels_best_threshold():
    y_true, y_prob = separable_data()
    thresholds = tune_thresholds(y_true, y_prob, "per-label")
    np.testing.assert_allclose(thresholds, [0.405, 0.705])
    np.testing.assert_array_equal(decide(y_prob, thresholds), y_true)


def test_shrunk_pulls_rare_label_toward_global():
    y_true, y_prob = separable_data()
    t_global = tune_thresholds(y_true, y_prob, "global")
    t_label = tune_thresholds(y_true, y_prob, "per-label")
    t_shrunk = tune_thresholds(y_true, y_prob, "shrunk", k=20)
    # rare label (4 positives): mostly global, (4 * 0.705 + 20 * 0.555) / 24 = 0.58
    assert t_global[1] < t_shrunk[1] < t_label[1]
    assert t_shrunk[1] == pytest.approx(0.58, abs=0.01)
    # common label (200 positives): stays near its own best threshold
    assert abs(t_shrunk[0] - t_label[0]) < 0.1 * abs(t_global[0] - t_label[0]) + 0.01


def test_labels_without_positives_keep_global_threshold():
    y_true, y_prob = separable_data()
    y_true = np.column_stack([y_true, np.zeros(400, dtype=int)])
    y_prob = np.column_stack([y_prob, np.linspace(0, 1, 400)])
    t_global = tune_thresholds(y_true, y_prob, "global")[0]
    for method in ["per-label", "shrunk"]:
        assert tune_thresholds(y_true, y_prob, method)[2] == pytest.approx(t_global)


def test_smoothing_ignores_a_lone_spike():
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    curve = np.exp(-(((grid - 0.4) / 0.15) ** 2)) * 0.8
    curve[-1] = 0.85  # a one-point fluke at the edge of the grid
    assert _best_threshold(curve, grid) == pytest.approx(0.95)
    assert _best_threshold(_smooth(curve), grid) == pytest.approx(0.4, abs=0.02)


def test_bootstrap_interval_and_paired_probability():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, size=(800, 6))
    y_random = rng.integers(0, 2, size=(800, 6))
    for metric in ["micro_f1", "macro_f1"]:
        result = bootstrap_ci(y_true, y_random, metric=metric, n=500)
        average = metric.split("_")[0]
        assert result["estimate"] == pytest.approx(f1_score(y_true, y_random, average=average))
        assert result["low"] <= result["estimate"] <= result["high"]
        assert "p_a_better" not in result
    paired = bootstrap_ci(y_true, y_true, y_random, n=500)
    assert paired["estimate"] == 1.0 and paired["low"] == 1.0
    assert paired["low_b"] <= paired["estimate_b"] <= paired["high_b"]
    assert 0.0 <= paired["p_a_better"] <= 1.0
    assert paired["p_a_better"] > 0.99
    difference = paired["estimate"] - paired["estimate_b"]
    assert 0.0 < paired["diff_low"] <= difference <= paired["diff_high"]
    assert json.loads(json.dumps(paired)) == paired


def test_bootstrap_is_seeded_and_validates_metric():
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.integers(0, 2, size=(2, 100, 3))
    assert bootstrap_ci(y_true, y_pred, n=200, seed=3) == bootstrap_ci(
        y_true, y_pred, n=200, seed=3
    )
    with pytest.raises(ValueError, match="'accuracy'.*micro_f1, macro_f1"):
        bootstrap_ci(y_true, y_pred, metric="accuracy")


def test_expected_calibration_error_weights_bins_by_pairs():
    y = np.array([[1, 0], [0, 1]])
    assert expected_calibration_error(y, y.astype(float)) == 0.0
    probs = np.array([[0.95, 0.45], [0.05, 0.55]])  # four bins, one pair each
    assert expected_calibration_error(y, probs) == pytest.approx((0.05 + 0.45 + 0.05 + 0.45) / 4)


# Four labels; row 0 ranks labels 0, 1, 3, 2 (positives 0 and 2), row 1 ranks 2, 1, 0, 3
# (positive 1), row 2 has no positive label and is left out.
RANK_TRUE = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
RANK_PROBS = np.array([[0.9, 0.8, 0.1, 0.3], [0.2, 0.4, 0.6, 0.1], [0.5, 0.5, 0.5, 0.5]])


def test_ranking_metrics_match_hand_computed_values():
    m = ranking_metrics(RANK_TRUE, RANK_PROBS)
    assert m["ranking_rows"] == 2
    # top 1: row 0 right (1 of its 2), row 1 wrong; top 3: one positive each.
    assert m["precision@1"] == pytest.approx((1 + 0) / 2)
    assert m["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["f1@1"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["f1@3"] == pytest.approx((2 / 5 + 2 / 4) / 2)  # 2PR/(P+R) = 2tp/(k+positives)
    assert m["precision@5"] == pytest.approx((2 / 4 + 1 / 4) / 2)  # k capped at the 4 labels
    assert m["ndcg@1"] == pytest.approx(0.5)
    ndcg3_row0 = 1 / (1 + 1 / np.log2(3))  # hit at rank 1 of an ideal 2 hits
    ndcg3_row1 = 1 / np.log2(3)  # its one hit at rank 2
    assert m["ndcg@3"] == pytest.approx((ndcg3_row0 + ndcg3_row1) / 2)
    # Row 0: precision 1/1 at rank 1 and 2/4 at rank 4; row 1: 1/2 at rank 2.
    assert m["lrap"] == pytest.approx(((1 + 2 / 4) / 2 + 1 / 2) / 2)
    assert m["coverage_error"] == pytest.approx((4 + 2) / 2)


def test_ranking_metrics_in_chunks_agree_with_sklearn(monkeypatch):
    rng = np.random.default_rng(0)
    y_true = rng.random((50, 30)) < 0.1
    probs = rng.random((50, 30))
    whole = ranking_metrics(y_true, probs)
    monkeypatch.setattr(metrics_mod, "RANKING_CELLS", 7 * 30)  # 8 chunks of 7 rows or fewer
    assert ranking_metrics(y_true, probs) == pytest.approx(whole)
    scored = y_true.any(axis=1)
    assert whole["ranking_rows"] == scored.sum() < 50
    assert whole["ndcg@5"] == pytest.approx(ndcg_score(y_true[scored], probs[scored], k=5))
    brute = [row[np.argsort(-p)[:3]].sum() / 3 for row, p in zip(y_true[scored], probs[scored])]
    assert whole["precision@3"] == pytest.approx(np.mean(brute))
    for p in (probs, np.round(probs, 1)):  # ties rank as sklearn's "max" ranks
        lrap = label_ranking_average_precision_score(y_true[scored], p[scored])
        assert ranking_metrics(y_true, p)["lrap"] == pytest.approx(lrap, rel=1e-12)


def test_ranking_metrics_need_two_labels_and_a_positive():
    assert ranking_metrics(np.zeros((3, 4)), np.ones((3, 4))) == {"ranking_rows": 0}
    assert ranking_metrics(np.ones((3, 1)), np.ones((3, 1))) == {"ranking_rows": 3}
    with pytest.raises(ValueError, match="same shape"):
        ranking_metrics(np.ones((3, 4)), np.ones((3, 5)))


def test_top_labels_are_best_first():
    assert top_labels(RANK_PROBS[:2], 2).tolist() == [[0, 1], [2, 1]]
    assert top_labels(RANK_PROBS[:2], 9).tolist() == [[0, 1, 3, 2], [2, 1, 0, 3]]
    assert top_labels(np.array([[0.5, 0.7, 0.5, 0.7]]), 3).tolist() == [[1, 3, 0]]  # ties


@pytest.mark.parametrize("rule", [DecisionRule(top_k=2), DecisionRule(2, 1), DecisionRule(None, 1)])
def test_thresholding_rule_scores_decides_as_the_rule(rule):
    probs = np.random.default_rng(1).random((40, 6))
    scores = rule_scores(probs, rule)
    for t in (0.0, 0.05, 0.3, 0.5, 0.9, 1.0):
        np.testing.assert_array_equal(scores >= t, decide(probs, t, rule) == 1)
    assert rule_scores(probs, DecisionRule()) is probs
