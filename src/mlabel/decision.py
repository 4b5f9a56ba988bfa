"""Turning probabilities into labels: thresholds, plus an optional rule (a cap, a minimum)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlabel.errors import ConfigError


@dataclass(frozen=True)
class DecisionRule:
    """What applies after the thresholds: at most `top_k` labels per text (None: no cap), and at
    least `min_labels` (its best ones, even under their thresholds)."""

    top_k: int | None = None
    min_labels: int = 0

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k is {self.top_k}, expected 1 or more (or none)")
        if self.min_labels < 0:
            raise ConfigError(f"min_labels is {self.min_labels}, expected 0 or more")
        if self.top_k is not None and self.min_labels > self.top_k:
            raise ConfigError(f"min_labels ({self.min_labels}) is above top_k ({self.top_k})")

    def describe(self) -> str:
        """The rule as its options, e.g. "top-k 3, min-labels 1"; "" when there is none."""
        parts = [f"top-k {self.top_k}"] if self.top_k is not None else []
        return ", ".join(parts + ([f"min-labels {self.min_labels}"] if self.min_labels else []))


def decide(
    probs: np.ndarray, thresholds: float | np.ndarray, rule: DecisionRule | None = None
) -> np.ndarray:
    """(n, L) probabilities to 0/1 decisions: a label is on when prob >= its threshold, then the
    rule's cap and minimum apply by rank."""
    probs = np.asarray(probs)
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.ndim > 1 or (thresholds.ndim == 1 and thresholds.shape[0] != probs.shape[-1]):
        raise ValueError(
            f"thresholds must be a scalar or have one value per label ({probs.shape[-1]}), "
            f"got shape {thresholds.shape}"
        )
    hits = (probs >= thresholds).astype(np.int8)
    if rule is None or probs.size == 0:
        return hits
    if rule.top_k is not None:
        hits[~top_mask(probs, rule.top_k)] = 0
    if rule.min_labels:
        hits[top_mask(probs, rule.min_labels)] = 1
    return hits


def top_mask(probs: np.ndarray, k: int) -> np.ndarray:
    """(n, L) bool: the k best labels of each row, ties going to the lower index (as a stable
    sort ranks them). A partial sort: O(L) per row, not O(L log L), for thousands of labels."""
    n_labels = probs.shape[1]
    if k >= n_labels:
        return np.ones(probs.shape, dtype=bool)
    kth = -np.partition(-probs, k - 1, axis=1)[:, k - 1 : k]  # each row's k-th best score
    above, tied = probs > kth, probs == kth
    room = k - above.sum(axis=1)  # places left for the labels tied at the k-th score
    mask = above | tied
    crowded = tied.sum(axis=1) > room  # rare with real probabilities
    if crowded.any():
        first = np.cumsum(tied[crowded], axis=1) <= room[crowded, None]
        mask[crowded] = above[crowded] | (tied[crowded] & first)
    return mask


def label_lists(labels: list[str], hits: np.ndarray) -> list[list[str]]:
    """The names of the labels that are on, per row."""
    return [[labels[j] for j in np.flatnonzero(row)] for row in hits]
