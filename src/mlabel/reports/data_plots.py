"""Plots of what a table holds, for `mlabel inspect --out`: label frequencies, labels per row,
label co-occurrence and text lengths."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from mlabel.reports.render import bar_height, label_colors, pct, save_png, wrap


def plot_label_frequencies(
    labels: list[str], y: np.ndarray, out_png: Path, total: int | None = None
) -> Path:
    """Horizontal bars: rows per label, most frequent on top; `total` labels in the data when
    `labels` are only some of them."""
    counts = y.sum(axis=0).astype(int)
    order = np.argsort(-counts, kind="stable")[::-1]  # barh draws bottom-up
    colors = label_colors(len(labels))
    fig = Figure(figsize=(9, bar_height(len(labels))), layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(
        [wrap(labels[j], 40) for j in order], counts[order], color=[colors[j] for j in order]
    )
    ax.bar_label(bars, [f"{c} ({pct(c, len(y))})" for c in counts[order]], padding=3, fontsize=9)
    ax.set_xlim(0, counts.max() * 1.25 + 1)
    ax.set_xlabel("rows with the label")
    some = f"the {len(labels)} most frequent of " if total and total > len(labels) else ""
    ax.set_title(f"Label frequencies ({len(y)} rows, {some}{total or len(labels)} labels)")
    ax.margins(y=0.01)
    return save_png(fig, out_png)


def plot_labels_per_row(y: np.ndarray, out_png: Path) -> Path:
    """Bar chart: how many rows carry 0, 1, 2, ... labels."""
    per_row = y.sum(axis=1).astype(int)
    values = np.arange(per_row.max() + 1)
    counts = np.bincount(per_row, minlength=len(values))
    fig = Figure(figsize=(max(6, 0.5 * len(values) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(values, counts, color="#4c72b0")
    ax.bar_label(bars, [f"{c}" if c else "" for c in counts], padding=2, fontsize=9)
    ax.set_xticks(values)
    ax.set_xlabel("labels on the row")
    ax.set_ylabel("rows")
    ax.set_ylim(0, counts.max() * 1.12 + 1)
    ax.set_title(f"Labels per row (mean {per_row.mean():.2f})")
    return save_png(fig, out_png)


def plot_cooccurrence(labels: list[str], y: np.ndarray, out_png: Path) -> Path:
    """Heatmap of rows that carry both labels; the diagonal (grey) holds each label's count."""
    n = len(labels)
    both = (y.T @ y).astype(int)
    off = np.ma.masked_array(both, mask=np.eye(n, dtype=bool))
    size = max(6.0, 0.42 * n + 3.5)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#dddddd")
    image = ax.imshow(off, cmap=cmap, vmin=0, vmax=max(1, off.max() or 1))
    fig.colorbar(image, ax=ax, shrink=0.8, label="rows with both labels")
    names = [wrap(label, 22) for label in labels]
    ax.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    font = 9 if n <= 12 else 7 if n <= 24 else 6
    ax.tick_params(labelsize=font + 1)
    threshold = 0.6 * max(1, off.max() or 1)
    for i in range(n):
        for j in range(n):
            dark = i != j and both[i, j] > threshold
            weight = "bold" if i == j else "normal"
            ax.text(
                j,
                i,
                f"{both[i, j]}",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if dark else "black",
                fontweight=weight,
            )
    ax.set_title("Label co-occurrence (rows with both labels; diagonal: rows with the label)")
    return save_png(fig, out_png)


def plot_length_histogram(
    lengths: np.ndarray, unit: str, out_png: Path, cut: int, limit: int | None = None
) -> Path:
    """Histogram of text lengths, with the share of rows up to `cut` and the model's `limit`."""
    top = max(1, int(np.quantile(lengths, 0.995))) if len(lengths) else 1
    clipped = np.minimum(lengths, top)
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.subplots()
    width = max(1, -(-top // 60))  # whole-number bins: integer lengths would alias
    ax.hist(clipped, bins=np.arange(0, top + width + 1, width), color="#4c72b0", alpha=0.85)
    share = pct((lengths <= cut).sum(), len(lengths))
    ax.axvline(
        cut, color="#c44e52", linestyle="--", linewidth=2, label=f"{cut}: {share} of rows fit"
    )
    if limit is not None and limit < top:
        ax.axvline(limit, color="#333333", linestyle=":", linewidth=2, label=f"model limit {limit}")
    ax.legend(loc="upper right")
    note = " (longest 0.5% in the last bin)" if len(lengths) and lengths.max() > top else ""
    ax.set_xlabel(f"length in {unit}{note}")
    ax.set_ylabel("rows")
    ax.set_title(
        f"Text length (median {np.median(lengths):.0f}, max {lengths.max()} {unit.split()[0]})"
    )
    return save_png(fig, out_png)


def plot_length_by_label(
    labels: list[str], y: np.ndarray, tokens: np.ndarray, out_png: Path, cut: int | None = None
) -> Path:
    """One horizontal box per label: token lengths of the rows that carry it."""
    colors = label_colors(len(labels))
    groups = [tokens[y[:, j] > 0] for j in range(len(labels))]
    fig = Figure(figsize=(9, bar_height(len(labels))), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(labels))[::-1]  # first label on top
    boxes = ax.boxplot(
        [g if len(g) else [np.nan] for g in groups],
        positions=positions,
        orientation="horizontal",
        patch_artist=True,
        widths=0.6,
        flierprops={"markersize": 2, "alpha": 0.4},
        medianprops={"color": "black"},
    )
    for patch, color in zip(boxes["boxes"], colors):
        patch.set_facecolor(color)
    ax.set_yticks(positions, [f"{wrap(n, 40)} ({len(g)})" for n, g in zip(labels, groups)])
    if cut is not None:
        ax.axvline(cut, color="#c44e52", linestyle="--", label=f"suggested --max-len {cut}")
        ax.legend(loc="best")
    ax.set_xlabel("length in tokens")
    ax.set_title("Text length by label (rows with the label; count in brackets)")
    return save_png(fig, out_png)
