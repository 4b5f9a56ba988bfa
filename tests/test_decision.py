"""Probabilities to labels: thresholds, a cap and a minimum, on arrays without a model."""

from __future__ import annotations

import numpy as np
import pytest

from mlabel.decision import DecisionRule, decide, label_lists, top_mask
from mlabel.errors import ConfigError

PROBS = np.array([[0.9, 0.8, 0.7, 0.1], [0.2, 0.3, 0.1, 0.05], [0.6, 0.1, 0.65, 0.2]])


def test_thresholds_alone():
    np.testing.assert_array_equal(decide(PROBS, 0.5), [[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0]])
    cuts = np.array([0.95, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(decide(PROBS, cuts)[0], [0, 1, 1, 0])
    with pytest.raises(ValueError, match="one value per label"):
        decide(PROBS, np.array([0.5, 0.5]))


def test_a_cap_keeps_the_best_labels_over_their_thresholds():
    hits = decide(PROBS, 0.5, DecisionRule(top_k=2))
    np.testing.assert_array_equal(hits, [[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]])


def test_min_labels_adds_the_best_label_only_where_none_passed():
    hits = decide(PROBS, 0.5, DecisionRule(min_labels=1))
    np.testing.assert_array_equal(hits, [[1, 1, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0]])


def test_top_k_with_a_threshold_of_zero_is_plain_top_k():
    hits = decide(PROBS, 0.0, DecisionRule(top_k=1))
    assert label_lists(["a", "b", "c", "d"], hits) == [["a"], ["b"], ["c"]]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"top_k": 0}, "top_k is 0"),
        ({"min_labels": -1}, "min_labels is -1"),
        ({"top_k": 1, "min_labels": 2}, "above top_k"),
    ],
)
def test_bad_rules_are_refused(rule, message):
    with pytest.raises(ConfigError, match=message):
        DecisionRule(**rule)


def test_top_mask_matches_a_stable_sort_with_ties():
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 4, size=(50, 7)) / 4  # many ties
    rank = np.argsort(np.argsort(-probs, axis=1, kind="stable"), axis=1, kind="stable")
    for k in (1, 2, 3, 7, 9):
        np.testing.assert_array_equal(top_mask(probs, k), rank < k)
