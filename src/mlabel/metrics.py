"""Multi-label metrics, decision-threshold tuning and bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    coverage_error,
    f1_score,
    jaccard_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from mlabel.config import THRESHOLD_METHODS
from mlabel.decision import DecisionRule, top_mask

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
BOOTSTRAP_METRICS = ("micro_f1", "macro_f1")
SMOOTH_POINTS = 7  # moving-average window over the 0.01-step grid, i.e. 0.07 wide
CALIBRATION_BINS = 10
RANKING_KS = (1, 3, 5)
RANKING_CELLS = 1 << 22  # (row, label) cells ranked at a time: bounds memory at many labels
THRESHOLD_CELLS = 1 << 22  # (row, label) cells binned at a time in threshold tuning


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Micro/macro/samples F1, micro precision/recall, subset accuracy, Hamming loss, per label.
    `macro_f1` averages over every label, 0 for those the table lacks and none were given
    (sklearn's zero_division=0); `macro_f1_seen` over the `labels_seen` others only."""
    y_true, y_pred = _check_pair(y_true, y_pred, labels)
    hamming = float(np.mean(y_true != y_pred))  # sklearn's hamming_loss, without its checks
    y_true, y_pred, cols = _multilabel(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=cols, average=None, zero_division=0
    )
    seen = (support > 0) | (y_pred[:, cols].getnnz(axis=0) > 0)
    per_label = {
        name: {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for name, p, r, f, s in zip(labels, precision, recall, f1, support)
    }
    pair = dict(y_true=y_true, y_pred=y_pred, labels=cols)
    return {
        "micro_f1": float(f1_score(**pair, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(**pair, average="macro", zero_division=0)),
        "macro_f1_seen": float(f1[seen].mean()) if seen.any() else 0.0,
        "labels_seen": int(seen.sum()),
        # A text without labels, rightly given none, scores 1 (sklearn's zero_division applies
        # only when a row's truth and prediction are both empty).
        "samples_f1": float(f1_score(**pair, average="samples", zero_division=1)),
        "jaccard": float(jaccard_score(**pair, average="samples", zero_division=1)),
        "micro_precision": float(precision_score(**pair, average="micro", zero_division=0)),
        "micro_recall": float(recall_score(**pair, average="micro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "hamming_loss": hamming,
        "per_label": per_label,
    }


def ranking_metrics(
    y_true: np.ndarray, probs: np.ndarray, ks: tuple[int, ...] = RANKING_KS
) -> dict[str, float | int]:
    """The ranking metrics of subject indexing, from the probabilities alone (no thresholds).

    precision@k, recall@k and F1@k (per row over its k best labels, k capped at the label count,
    then averaged); nDCG@k (what sklearn's `ndcg_score` gives for 0/1 relevance, computed from
    the same partial sort instead of a full sort per k); label ranking average precision
    (`lrap`) and `coverage_error` (how far down the ranking all of a row's labels are found;
    lower is better) from sklearn. Rows without a positive label have no ranking to judge and
    are left out of all of them (sklearn would score them 1 in LRAP and 0 in coverage);
    `ranking_rows` counts the rows scored.
    """
    y_true, probs = _check_scores(y_true, probs)
    scored = y_true.any(axis=1)
    y_true, probs = y_true[scored], probs[scored]
    n_rows, n_labels = y_true.shape
    if n_rows == 0 or n_labels < 2:  # nothing to rank
        return {"ranking_rows": n_rows}
    sums: dict[str, float] = {}
    step = max(1, RANKING_CELLS // n_labels)
    for start in range(0, n_rows, step):
        part = slice(start, start + step)
        for name, total in _ranking_sums(y_true[part], probs[part], ks).items():
            sums[name] = sums.get(name, 0.0) + total
    return {"ranking_rows": n_rows, **{name: total / n_rows for name, total in sums.items()}}


def _ranking_sums(y_true: np.ndarray, probs: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Each ranking metric summed over rows that all hold a positive label."""
    n_rows, n_labels = y_true.shape
    top = top_labels(probs, max(ks))
    hit = np.take_along_axis(y_true, top, axis=1)
    found = np.cumsum(hit, axis=1)  # positives among the best 1, 2, ... labels
    n_pos = y_true.sum(axis=1)
    gain = 1 / np.log2(np.arange(top.shape[1]) + 2)  # DCG's discount of ranks 1, 2, ...
    dcg, ideal = np.cumsum(hit * gain, axis=1), np.cumsum(gain)
    sums = {}
    for k in ks:
        k_eff = min(k, n_labels)
        tp = found[:, k_eff - 1]
        sums[f"precision@{k}"] = float((tp / k_eff).sum())
        sums[f"recall@{k}"] = float((tp / n_pos).sum())
        sums[f"f1@{k}"] = float((2 * tp / (k_eff + n_pos)).sum())  # = 2PR / (P + R), 0 if tp = 0
        # The ideal ranking puts a row's positives first: min(k, positives) of them.
        sums[f"ndcg@{k}"] = float((dcg[:, k_eff - 1] / ideal[np.minimum(k_eff, n_pos) - 1]).sum())
    sums["lrap"] = _lrap_sum(y_true, probs)
    sums["coverage_error"] = float(coverage_error(y_true, probs)) * n_rows
    return sums


def _lrap_sum(y_true: np.ndarray, probs: np.ndarray) -> float:
    """sklearn's label ranking average precision summed over rows that all hold a positive:
    per positive label, the share of positives among the labels scoring at least as high (ties
    count as higher, as sklearn's "max" ranks), averaged per row. Computed one comparison pass
    per positive label instead of sklearn's rank per row in Python (13 s against 0.6 at 20,000
    rows and 2,780 labels: bench/logs/metrics-many-labels-xeon-2026-12-01.log)."""
    rows, cols = np.nonzero(y_true)
    ratios = np.empty(len(rows))
    step = max(1, RANKING_CELLS // y_true.shape[1])
    for start in range(0, len(rows), step):
        r, c = rows[start : start + step], cols[start : start + step]
        at_least = probs[r] >= probs[r, c][:, None]  # labels scoring at least as high
        ratios[start : start + step] = (at_least & y_true[r]).sum(axis=1) / at_least.sum(axis=1)
    return float((np.bincount(rows, ratios, len(y_true)) / y_true.sum(axis=1)).sum())


def top_labels(probs: np.ndarray, k: int) -> np.ndarray:
    """(n, min(k, L)) label indices of each row's k highest scores, best first; ties rank as in
    `decide` (the lower index first)."""
    k = min(k, probs.shape[1])
    best = np.nonzero(top_mask(probs, k))[1].reshape(-1, k)  # exactly k per row, by index
    order = np.argsort(-np.take_along_axis(probs, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def micro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Micro-F1 of two (n, L) 0/1 arrays; 0 when neither holds a positive (zero_division=0)."""
    tp, fp, fn = _hits(*_check_pair(y_true, y_pred)).sum(axis=(1, 2))
    return float(_f1(tp, fp, fn))


def classification_report_text(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], shown: np.ndarray | None = None
) -> str:
    """sklearn's text classification report with label names; with `shown` (label indices),
    only those labels' lines, while the averages stay over every label. Its samples average
    scores a row rightly given no label 1, as `samples_f1` does (sklearn's report, with one
    zero_division for every line, would give it 0 and disagree with the figure above it)."""
    y_true, y_pred, cols = _multilabel(*_check_pair(y_true, y_pred, labels))
    args = dict(labels=cols, target_names=labels, digits=3)
    lines = classification_report(y_true, y_pred, **args, zero_division=0).split("\n")
    # header, blank, one line per label, blank, averages (samples last), ""
    lines[-2] = classification_report(y_true, y_pred, **args, zero_division=1).split("\n")[-2]
    if shown is not None:
        lines = lines[:2] + [lines[2 + j] for j in shown] + lines[2 + len(labels) :]
    return "\n".join(lines)


def confusion_matrices(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """One 2x2 matrix [[tn, fp], [fn, tp]] per label, shape (L, 2, 2)."""
    y_true, y_pred, cols = _multilabel(*_check_pair(y_true, y_pred))
    return multilabel_confusion_matrix(y_true, y_pred, labels=cols)


def f1_by_threshold(
    y_true: np.ndarray, y_prob: np.ndarray, grid: np.ndarray = THRESHOLD_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Micro-F1 curve (G,) and per-label F1 curves (L, G) over a grid of thresholds."""
    return f1_curves(threshold_counts(y_true, y_prob, grid))


def threshold_counts(
    y_true: np.ndarray, y_prob: np.ndarray, grid: np.ndarray = THRESHOLD_GRID
) -> np.ndarray:
    """TP, FP and FN (3, G, L) at each point of `grid` (in its order) and label."""
    y_true = np.asarray(y_true).astype(bool)
    y_prob = np.asarray(y_prob, dtype=float)
    if y_true.ndim != 2 or y_true.shape != y_prob.shape:
        raise ValueError(
            f"y_true and y_prob must be (n, L) arrays of the same shape, "
            f"got {y_true.shape} and {y_prob.shape}"
        )
    grid = np.asarray(grid, dtype=float)
    order = np.argsort(grid, kind="stable")
    return _counts_by_threshold(y_true, y_prob, grid[order])[:, np.argsort(order)]


def f1_curves(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Micro-F1 curve (G,) and per-label F1 curves (L, G) from TP, FP and FN (3, G, L)."""
    tp, fp, fn = counts
    return _f1(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1)), _f1(tp, fp, fn).T


def _counts_by_threshold(y_true: np.ndarray, y_prob: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """TP, FP and FN per (ascending) grid point and label, (3, G, L), in one pass over the cells.

    A cell is predicted at every grid point up to the last one its probability reaches, so a
    histogram of that point per label, summed from the top, gives the predicted counts of all
    G thresholds at once: O(n L + G L) instead of G passes over the (n, L) cells.
    """
    n_rows, n_labels = y_true.shape
    bins = len(grid) + 1
    hist = np.zeros((2, n_labels * bins))  # [all cells, positive cells] per (label, point)
    step = max(1, THRESHOLD_CELLS // max(n_labels, 1))
    for start in range(0, n_rows, step):
        probs, truth = y_prob[start : start + step], y_true[start : start + step]
        reached = np.searchsorted(grid, probs, side="right")  # p >= grid[g] for g < reached
        reached[np.isnan(probs)] = 0  # NaN reaches no threshold, as with `>=`
        cell = (np.arange(n_labels) * bins + reached).ravel()
        hist[0] += np.bincount(cell, minlength=n_labels * bins)
        hist[1] += np.bincount(cell[truth.ravel()], minlength=n_labels * bins)
    return counts_from_histogram(hist.reshape(2, n_labels, bins), y_true.sum(axis=0))


def counts_from_histogram(hist: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """TP, FP and FN (3, G, L) per ascending grid point and label, from the histograms (2, L,
    G + 1) of all cells and of positive cells by how many grid points their score reaches;
    `n_pos`: positives per label (cells reaching no point are counted there alone)."""
    # predicted[:, j, g]: cells of label j whose score reaches grid[g]
    predicted = np.cumsum(hist[:, :, ::-1], axis=2)[:, :, -2::-1]
    tp = predicted[1].T
    return np.stack([tp, predicted[0].T - tp, n_pos - tp])


def tune_thresholds(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    method: str = "global",
    *,
    k: float = 20.0,
    grid: np.ndarray = THRESHOLD_GRID,
) -> np.ndarray:
    """Per-label decision thresholds (L,) chosen on validation data.

    "fixed:X" (or "fixed" = 0.5) uses X everywhere; "global" maximises micro-F1 with one
    threshold; "per-label" maximises each label's F1; "shrunk" pulls each label's (smoothed)
    best threshold toward the global one, more so for labels with few positives:
    t = (n_pos * t_label + k * t_global) / (n_pos + k).
    """
    n_labels = np.asarray(y_prob).shape[1]
    if (cut := fixed_cut(method)) is not None:
        return np.full(n_labels, cut)
    if method not in THRESHOLD_METHODS:
        raise ValueError(
            f"unknown threshold method {method!r}; expected fixed:X or one of "
            f"{', '.join(THRESHOLD_METHODS)}"
        )
    counts = threshold_counts(y_true, y_prob, grid)
    n_pos = np.asarray(y_true).astype(bool).sum(axis=0)
    return thresholds_from_counts(counts, n_pos, method, k=k, grid=grid)


def thresholds_from_counts(
    counts: np.ndarray,
    n_pos: np.ndarray,
    method: str,
    *,
    k: float = 20.0,
    grid: np.ndarray = THRESHOLD_GRID,
) -> np.ndarray:
    """Per-label thresholds (L,) by a tuned method (`tune_thresholds`) from the TP, FP and FN
    counts (3, G, L) over `grid` on rows holding `n_pos` positives per label."""
    grid = np.asarray(grid, dtype=float)
    micro, per_label = f1_curves(counts)
    t_global = _best_threshold(micro, grid)
    if method == "global":
        return np.full(len(n_pos), t_global)
    if method == "shrunk":
        per_label = _smooth(per_label)
    t_label = _best_threshold(per_label, grid)
    if method == "shrunk":
        t_label = (n_pos * t_label + k * t_global) / (n_pos + k)
    # A label never seen positive has an all-zero F1 curve: it tells us nothing.
    return np.where(n_pos > 0, t_label, t_global)


def fixed_cut(method: str) -> float | None:
    """The cut of "fixed" (0.5) or "fixed:X"; None for a tuned method."""
    return _parse_fixed(method) if method == "fixed" or method.startswith("fixed:") else None


def rule_scores(probs: np.ndarray, rule: DecisionRule | None) -> np.ndarray:
    """Scores that thresholds alone turn into `decide(probs, t, rule)` for any t in [0, 1]:
    labels the rule's minimum forces on score 2, labels past its cap score -1. Thresholds tuned
    on them are tuned for the rule."""
    if rule is None or (rule.top_k is None and rule.min_labels == 0):
        return probs
    allowed = top_mask(probs, rule.top_k) if rule.top_k is not None else True
    forced = top_mask(probs, rule.min_labels) if rule.min_labels else False
    return np.where(forced, 2.0, np.where(allowed, probs, -1.0))


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred_a: np.ndarray,
    y_pred_b: np.ndarray | None = None,
    metric: str = "micro_f1",
    n: int = 1000,
    seed: int = 0,
) -> dict:
    """Point estimate and 95% bootstrap interval of a metric; with b, P(a beats b) (paired).

    Returns {"metric", "n", "estimate", "low", "high"} and, when b is given, also
    {"estimate_b", "low_b", "high_b", "p_a_better"}: the fraction of resamples where a > b,
    and "diff_low", "diff_high": the 95% interval of a - b on the same (paired) resamples.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(
            f"unknown bootstrap metric {metric!r}; expected one of {', '.join(BOOTSTRAP_METRICS)}"
        )
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    preds = [y_pred_a] if y_pred_b is None else [y_pred_a, y_pred_b]
    hits = [_hits(*_check_pair(y_true, y_pred)) for y_pred in preds]
    samples = _resampled_metric(hits, metric, n, np.random.default_rng(seed))
    result = {"metric": metric, "n": n}
    for suffix, h, s in zip(["", "_b"], hits, samples):
        low, high = np.percentile(s, [2.5, 97.5])
        point = _metric_from_counts(h.sum(axis=1), metric)
        result.update({f"estimate{suffix}": float(point), f"low{suffix}": float(low)})
        result[f"high{suffix}"] = float(high)
    if y_pred_b is not None:
        result["p_a_better"] = float(np.mean(samples[0] > samples[1]))
        low, high = np.percentile(samples[0] - samples[1], [2.5, 97.5])
        result.update(diff_low=float(low), diff_high=float(high))
    return result


def calibration_bins(
    y: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin: rows, mean predicted probability, observed positive rate."""
    p, t = probs.ravel(), (y.ravel() > 0).astype(float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=p, minlength=bins) / np.maximum(count, 1)
    rate = np.bincount(which, weights=t, minlength=bins) / np.maximum(count, 1)
    return count, mean_p, rate


def expected_calibration_error(
    y: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Bin-weighted mean |observed rate - mean probability| over all (row, label) pairs."""
    count, mean_p, rate = calibration_bins(y, probs, bins)
    return float((count * np.abs(rate - mean_p)).sum() / max(count.sum(), 1))


def _hits(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-row TP/FP/FN indicators, shape (3, n, L)."""
    return np.stack([y_true & y_pred, ~y_true & y_pred, y_true & ~y_pred]).astype(float)


def _resampled_metric(
    hits: list[np.ndarray], metric: str, n: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The metric on n shared row resamples for each prediction set; chunked to bound memory."""
    n_rows = hits[0].shape[1]
    chunk = max(1, 4_000_000 // n_rows)
    out: list[list[np.ndarray]] = [[] for _ in hits]
    for start in range(0, n, chunk):
        weights = _resample_weights(n_rows, min(chunk, n - start), rng)
        for samples, h in zip(out, hits):
            counts = np.stack([weights @ h[c] for c in range(3)])
            samples.append(_metric_from_counts(counts, metric))
    return [np.concatenate(samples) for samples in out]


def _metric_from_counts(counts: np.ndarray, metric: str) -> np.ndarray:
    """Micro- or macro-F1 from (3, ..., L) TP/FP/FN counts."""
    tp, fp, fn = counts
    if metric == "micro_f1":
        return _f1(tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1))
    return _f1(tp, fp, fn).mean(axis=-1)


def _resample_weights(n_rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n_rows) matrix: how often each row is drawn in each bootstrap resample."""
    draws = rng.integers(0, n_rows, size=(n, n_rows))
    flat = (draws + np.arange(n)[:, None] * n_rows).ravel()
    return np.bincount(flat, minlength=n * n_rows).reshape(n, n_rows).astype(float)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN), 0 where the denominator is 0 (sklearn's zero_division=0)."""
    denominator = 2 * tp + fp + fn
    zeros = np.zeros(np.shape(denominator))
    return np.divide(2 * tp, denominator, out=zeros, where=denominator > 0)


def _best_threshold(curves: np.ndarray, grid: np.ndarray) -> float | np.ndarray:
    """Middle of the longest run of grid points where a curve reaches its maximum (the first
    such run on a tie); a float for one curve (G,), an array for curves (L, G) at once."""
    curves = np.asarray(curves)
    rows = np.atleast_2d(curves)
    is_max = np.isclose(rows, rows.max(axis=1, keepdims=True), rtol=0, atol=1e-12)
    edges = np.diff(np.pad(is_max.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    row, start = np.nonzero(edges == 1)
    end = np.nonzero(edges == -1)[1]  # one past each run, in the same (row, run) order
    order = np.lexsort((start, start - end, row))  # per row: longest run first, then earliest
    first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
    best = (grid[start[first]] + grid[end[first] - 1]) / 2
    return float(best[0]) if curves.ndim == 1 else best


def _smooth(curves: np.ndarray, points: int = SMOOTH_POINTS) -> np.ndarray:
    """Centred moving average of an odd number of points along the last axis; windows are
    truncated (not zero-padded) at the ends."""
    curves = np.asarray(curves, dtype=float)
    width = curves.shape[-1]
    sums = np.cumsum(np.pad(curves, [(0, 0)] * (curves.ndim - 1) + [(1, 0)]), axis=-1)
    centre = np.arange(width)
    low, high = np.maximum(centre - points // 2, 0), np.minimum(centre + points // 2 + 1, width)
    return (sums[..., high] - sums[..., low]) / (high - low)


def _parse_fixed(method: str) -> float:
    """0.5 for "fixed", X for "fixed:X"; X must lie strictly between 0 and 1."""
    if method == "fixed":
        return 0.5
    text = method.removeprefix("fixed:")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"threshold method {method!r}: {text!r} is not a number") from None
    if not 0 < value < 1:
        raise ValueError(f"threshold method {method!r}: threshold {value} must be between 0 and 1")
    return value


def _check_scores(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (n, L) 0/1 array and scores of the same shape."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    if y_true.ndim != 2 or y_true.shape != probs.shape:
        raise ValueError(
            f"y_true and probs must be (n, L) arrays of the same shape, "
            f"got {y_true.shape} and {probs.shape}"
        )
    return y_true.astype(bool), probs


def _check_pair(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two (n, L) 0/1 arrays (and the label names) and return them as bool arrays."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must be (n, L) arrays of the same shape, "
            f"got {y_true.shape} and {y_pred.shape}"
        )
    if labels is not None and len(labels) != y_true.shape[1]:
        raise ValueError(f"got {len(labels)} label names for {y_true.shape[1]} label columns")
    return y_true.astype(bool), y_pred.astype(bool)


def _multilabel(
    y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[sparse.csr_matrix, sparse.csr_matrix, list[int]]:
    """The pair as sklearn reads multi-label data, and the label columns to score.

    As sparse matrices: on dense ones sklearn's input checks sort every cell (34 s against 0.1
    for the same figures at 20,000 rows and 2,780 labels, in
    bench/logs/metrics-many-labels-xeon-2026-12-01.log). sklearn reads one column as binary
    data, whose averages count the negatives as a class of their own, so a single label gets an
    empty column beside it, which `labels=cols` leaves out."""
    cols = list(range(y_true.shape[1]))
    if len(cols) == 1:
        empty = np.zeros_like(y_true)
        y_true, y_pred = np.hstack([y_true, empty]), np.hstack([y_pred, empty])
    return sparse.csr_matrix(y_true), sparse.csr_matrix(y_pred), cols
