"""Curves over time: a training run's loss and validation metrics per epoch, and a tuning
study's history and parameter importances."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlabel.reports.render import save_png

TRAIN_METRICS = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy")
TUNE_DPI = 100  # the tuning plots are small and keep their own resolution


def read_metrics_jsonl(path: str | Path) -> list[dict]:
    """A run's metrics.jsonl as one dict per epoch (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_training_curves(metrics_jsonl: Path, out_png: Path) -> Path:
    """Training/validation loss and validation metrics per epoch, from a run's metrics.jsonl."""
    records = read_metrics_jsonl(metrics_jsonl)
    if not records:
        raise ValueError(f"{metrics_jsonl}: no epochs recorded")
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    for ax, keys, title in (
        (loss_ax, ("train_loss", "val_loss"), "Loss"),
        (metric_ax, TRAIN_METRICS, "Validation metrics (tuned thresholds)"),
    ):
        drawn = [k for k in keys if any(k in r for r in records)]
        for k in drawn:
            values = [r.get(k, np.nan) for r in records]
            ax.plot(epochs, values, "o-", label=k.replace("_", " "))
        if drawn:
            ax.legend(fontsize=9)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=title, xlabel="epoch")
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    loss_ax.set_ylabel("loss")
    metric_ax.set_ylabel("score")
    metric_ax.set_ylim(0, 1.02)
    fig.suptitle(f"Training curves ({len(records)} epochs)")
    return save_png(fig, out_png)


def _figure(width: float = 7, height: float = 4) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def plot_history(trials: Sequence[Any], path: Path) -> None:
    """Each completed trial's micro-F1 (`.number`, `.value` of Optuna trials) and the best so far."""
    fig, ax = _figure()
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    best = [max(values[: i + 1]) for i in range(len(values))]
    ax.plot(numbers, values, "o", label="trial", alpha=0.7)
    ax.step(numbers, best, where="post", label="best so far", color="C3")
    ax.set(xlabel="trial", ylabel="validation micro-F1", title="Optimisation history")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if trials:
        ax.legend(loc="best")
    save_png(fig, path, TUNE_DPI)


def plot_importance(importances: dict[str, float], path: Path) -> None:
    """Parameter importances as a bar chart, or a note when there is too little to say."""
    fig, ax = _figure()
    if importances:
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="C0")
        ax.set(xlabel="importance for validation micro-F1", title="Hyperparameter importance")
    else:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "Importance needs 2 or more completed trials\nthat differ in their settings.",
            ha="center",
            va="center",
        )
    save_png(fig, path, TUNE_DPI)
