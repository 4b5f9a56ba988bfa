"""Split examples into training and validation rows: iterative multi-label stratification,
seeded, with every label that has two or more positives on both sides where a swap allows."""

from __future__ import annotations

import numpy as np
from scipy import sparse

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
    y = sparse.csr_matrix(ex.y, dtype=np.int32)  # 0/1 labels: no `!= 0` copy of them
    # one label: stratify its positives and its negatives alike (as iterstrat did: it took two
    # columns or more)
    strata = y if y.shape[1] > 1 else sparse.hstack([y, 1 - y.toarray()], format="csr")
    in_val = stratified_folds(strata, n_val, seed) == 1
    train, val = _resize(y, list(np.flatnonzero(~in_val)), list(np.flatnonzero(in_val)), n_val)
    train, val = _cover_labels(y, train, val)
    return ex.subset(sorted(train)), ex.subset(sorted(val))


def stratified_folds(y: sparse.csr_matrix, n_val: int, seed: int) -> np.ndarray:
    """Each row's side, 0 (train) or 1 (validation, about `n_val` rows): Sechidis et al.'s
    iterative stratification as iterstrat's `MultilabelStratifiedShuffleSplit(test_size=n_val,
    random_state=seed)` draws it, the same rows from the same random stream. iterstrat recounts
    the remaining rows' labels as a dense matrix for each label it places (rows x labels x
    labels: hours at 50,000 rows and 20,000 subjects); here the counts are kept up to date as
    rows are placed, so the cost is one pass over the positives plus one over the labels per
    label placed."""
    rng = np.random.RandomState(seed)
    n = y.shape[0]
    order = np.arange(n)
    rng.shuffle(order)
    rows = y[order].astype(bool).tocsr()
    columns = rows.tocsc()
    share = np.array([n - n_val, n_val]) / n
    wanted = share * n  # rows each side still wants, and the same per label below
    wanted_labels = np.outer(share, np.asarray(rows.sum(axis=0)).ravel())
    left = np.asarray(rows.sum(axis=0)).ravel()  # positives per label among unplaced rows
    unplaced = np.ones(n, dtype=bool)
    side = np.zeros(n, dtype=int)
    while left.any():
        rarest = np.flatnonzero(left == left[left > 0].min())
        j = rarest[rng.choice(len(rarest))] if len(rarest) > 1 else rarest[0]
        holding = columns.indices[columns.indptr[j] : columns.indptr[j + 1]]
        for i in np.sort(holding[unplaced[holding]]):
            fold = _fold(wanted_labels[:, j], wanted, rng)
            labels = rows.indices[rows.indptr[i] : rows.indptr[i + 1]]
            side[i], unplaced[i] = fold, False
            wanted_labels[fold, labels] -= 1
            wanted[fold] -= 1
            left[labels] -= 1
    for i in np.flatnonzero(unplaced):  # rows without labels: to the side that wants most
        side[i] = _fold(wanted, wanted, rng)
        wanted[side[i]] -= 1
    return side[np.argsort(order)]


def _fold(first: np.ndarray, then: np.ndarray, rng: np.random.RandomState) -> int:
    """The side that wants most by `first`, ties broken by `then`, then at random (iterstrat's
    draws: a choice between the two sides only where both tie)."""
    if first[0] != first[1]:
        return int(np.argmax(first))
    if then[0] != then[1]:
        return int(np.argmax(then))
    return int(rng.choice(2))


def _resize(
    y: sparse.csr_matrix, train: list[int], val: list[int], n_val: int
) -> tuple[list[int], list[int]]:
    """Move rows with the fewest labels across until val has exactly n_val rows.

    Iterative stratification only approximates the requested size.
    """
    per_row = np.diff(y.indptr)
    while len(val) != n_val:
        src, dst = (val, train) if len(val) > n_val else (train, val)
        row = min(src, key=per_row.__getitem__)
        src.remove(row)
        dst.append(row)
    return train, val


def _cover_labels(
    y: sparse.csr_matrix, train: list[int], val: list[int]
) -> tuple[list[int], list[int]]:
    """Swap rows so that every label with >= 2 positives has a positive on each side.

    Each side's label counts are kept up to date across swaps rather than recounted per label,
    and rows are found through the label's positives, so thousands of labels cost (labels +
    swaps) x rows at most, not labels x rows x labels."""
    sides = _Sides(y, train, val)
    for j in np.argsort(np.bincount(y.indices, minlength=y.shape[1]), kind="stable"):
        if sides.counts[0][j] + sides.counts[1][j] < 2:
            continue
        for src, dst in ((0, 1), (1, 0)):
            if not sides.counts[dst][j]:
                sides.swap_in_positive(j, src, dst)
    return sides.rows[0].tolist(), sides.rows[1].tolist()


class _Sides:
    """The two sides' rows in order (swaps exchange places), each row's side and place, and
    each side's positives per label."""

    def __init__(self, y: sparse.csr_matrix, train: list[int], val: list[int]) -> None:
        self.y, self.columns, self.per_row = y, y.tocsc(), np.diff(y.indptr)
        self.rows = [np.array(train, dtype=int), np.array(val, dtype=int)]
        self.side = np.zeros(y.shape[0], dtype=int)
        self.place = np.zeros(y.shape[0], dtype=int)
        for s, rows in enumerate(self.rows):
            self.side[rows], self.place[rows] = s, np.arange(len(rows))
        self.counts = [np.bincount(y[r].indices, minlength=y.shape[1]) for r in self.rows]

    def labels(self, row: int) -> np.ndarray:
        return self.y.indices[self.y.indptr[row] : self.y.indptr[row + 1]]

    def swap_in_positive(self, j: int, src: int, dst: int) -> None:
        """Exchange a row with label j from src for a row of dst, losing no label on either
        side: rows with the fewest labels first, then in their side's order."""
        holders = self.columns.indices[self.columns.indptr[j] : self.columns.indptr[j + 1]]
        holders = holders[self.side[holders] == src]
        candidates = self.rows[dst][np.argsort(self.per_row[self.rows[dst]], kind="stable")]
        for a in holders[np.lexsort((self.place[holders], self.per_row[holders]))]:
            mine = self.labels(a)
            if np.any(self.counts[src][mine] < 2):
                continue
            # b leaves dst (a arrives), so b may hold none of dst's last positives a lacks
            last = self.counts[dst] == 1
            last[mine] = False
            fits = candidates[(self.y @ last.astype(np.int32))[candidates] == 0]
            if len(fits):
                self._exchange(a, fits[0], mine, self.labels(fits[0]))
                return

    def _exchange(self, a: int, b: int, mine: np.ndarray, theirs: np.ndarray) -> None:
        (src, dst), (i, k) = self.side[[a, b]], self.place[[a, b]]
        self.rows[src][i], self.rows[dst][k] = b, a
        self.side[[a, b]], self.place[[a, b]] = (dst, src), (k, i)
        self.counts[src][mine] -= 1
        self.counts[src][theirs] += 1
        self.counts[dst][theirs] -= 1
        self.counts[dst][mine] += 1
