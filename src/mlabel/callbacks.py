"""What a training run tells the outside: the `Callback` protocol, and the default callbacks that
print each epoch and draw the training curves.

Side jobs are callbacks so that the loop stays short (flair's trainer plugins): a tracker, a
tuner's pruning or a plot is a new callback, not a new branch in `training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from mlabel.finalize import TrainResult


class Callback(Protocol):
    """Hooks for printing, plotting, tracking and tuning, called on rank 0 only. Raising in
    `on_epoch_end` stops the run (e.g. Optuna pruning). Subclass it to inherit no-op hooks."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """An epoch ended; `record` is its line of metrics.jsonl."""

    def on_train_end(self, result: TrainResult) -> None:
        """The run finished: the model folder holds the best epoch and its thresholds."""

    def on_train_abort(self, error: BaseException) -> None:
        """The run stopped on `error` (raised again afterwards): a pruning, Ctrl-C or a failure."""


class ConsoleTable(Callback):
    """Prints each epoch's losses, F1 scores and speed as a one-row table on stderr."""

    KEYS = ("epoch", "train_loss", "val_loss", "micro_f1", "macro_f1", "samples_per_s")

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, markup=False)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        keys = [k for k in self.KEYS if k in record]
        table = Table(*keys, box=None)
        table.add_row(*[_fmt(record[k]) for k in keys])
        self.console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class CurvesPlot(Callback):
    """Draws `out/training_curves.png` from the run's metrics.jsonl when training ends."""

    def __init__(self, out: str | Path):
        self.out = Path(out)

    def on_train_end(self, result: TrainResult) -> None:
        # matplotlib is imported only to draw, not by every `import mlabel.callbacks`
        from mlabel.reports.curves import plot_training_curves

        plot_training_curves(self.out / "metrics.jsonl", self.out / "training_curves.png")


def default_callbacks(out: str | Path) -> tuple[Callback, ...]:
    """The console table and the curves plot of a run into `out`. Put them before trackers:
    the plot is drawn when a tracker's `on_train_end` looks for it."""
    return (ConsoleTable(), CurvesPlot(out))
