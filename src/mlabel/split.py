"""Split examples into training and validation rows: iterative multi-label stratification,
seeded, with every label that has two or more positives on both sides where a swap allows."""

from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from mlabel.data import Examples
from mlabel.errors import DataError


def split_examples(ex: Examples, val_frac: float, seed: int) -> tuple[Examples, Examples]:
    """Split into (train, val) by iterative stratification, seeded and deterministic.

    val gets round(n * val_frac) rows, at least one and at most n - 1; a label with two or
    more positives is put on both sides whenever a swap of rows allows it.
    """
    if not 0.0 < val_frac < 1.0:
        raise ValueError(f"val_frac must be between 0 and 1 (exclusive), got {val_frac!r}")
    if ex.y is None:
        raise ValueError("split_examples needs labelled examples (y is None)")
    n = len(ex)
    if n < 2:
        raise DataError(f"{ex.source}: need at least 2 rows to split off validation, got {n}")
    n_val = min(n - 1, max(1, round(n * val_frac)))
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    # one label: stratify its positives and its negatives (iterstrat wants two columns or more)
    strata = ex.y if ex.y.shape[1] > 1 else np.hstack([ex.y, 1 - ex.y])
    train, val = next(splitter.split(np.zeros(n), strata))
    train, val = _resize(ex.y, list(train), list(val), n_val)
    train, val = _cover_labels(ex.y, train, val)
    return ex.subset(sorted(train)), ex.subset(sorted(val))


def _resize(
    y: np.ndarray, train: list[int], val: list[int], n_val: int
) -> tuple[list[int], list[int]]:
    """Move rows with the fewest labels across until val has exactly n_val rows.

    Iterative stratification only approximates the requested size.
    """
    while len(val) != n_val:
        src, dst = (val, train) if len(val) > n_val else (train, val)
        row = min(src, key=lambda r: y[r].sum())
        src.remove(row)
        dst.append(row)
    return train, val


def _cover_labels(y: np.ndarray, train: list[int], val: list[int]) -> tuple[list[int], list[int]]:
    """Swap rows so that every label with >= 2 positives has a positive on each side.

    Each side's label counts are kept up to date across swaps rather than recounted per label,
    so thousands of labels cost (labels + swaps) x rows, not labels x rows x labels."""
    per_row = y.sum(axis=1)
    counts = {id(train): y[train].sum(axis=0), id(val): y[val].sum(axis=0)}
    for j in np.argsort(y.sum(axis=0), kind="stable"):
        if counts[id(train)][j] + counts[id(val)][j] < 2:
            continue
        for src, dst in ((train, val), (val, train)):
            if not counts[id(dst)][j]:
                _swap_in_positive(y, j, (src, counts[id(src)]), (dst, counts[id(dst)]), per_row)
    return train, val


def _swap_in_positive(
    y: np.ndarray,
    j: int,
    src: tuple[list[int], np.ndarray],
    dst: tuple[list[int], np.ndarray],
    per_row: np.ndarray,
) -> None:
    """Exchange a row with label j from src for a row of dst, losing no label on either side;
    each side is (rows, label counts), both updated in place."""
    (src_rows, src_counts), (dst_rows, dst_counts) = src, dst
    candidates = sorted(dst_rows, key=per_row.__getitem__)
    for a in sorted((r for r in src_rows if y[r, j]), key=per_row.__getitem__):
        if np.any((y[a] > 0) & (src_counts < 2)):
            continue
        for b in candidates:
            # b leaves dst (a arrives), so no label may vanish from dst
            if np.any((y[b] > 0) & (dst_counts + y[a] - y[b] < 1) & (dst_counts > 0)):
                continue
            src_rows[src_rows.index(a)], dst_rows[dst_rows.index(b)] = b, a
            src_counts += y[b] - y[a]
            dst_counts += y[a] - y[b]
            return
