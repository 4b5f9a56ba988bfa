"""Hyperparameter search with Optuna: seeded TPE, median pruning on validation micro-F1, resumable."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlabel import extras, faults
from mlabel.atomic import write_text_atomic
from mlabel.config import LOSSES, POOLINGS, TrainConfig, from_dict
from mlabel.errors import ConfigError
from mlabel.reports.curves import plot_history, plot_importance

STUDY_NAME = "mlabel"
# The methods the tuner tries: auto and all of config.THRESHOLD_METHODS, fixed at 0.5.
SEARCHED_THRESHOLDS = ("auto", "fixed:0.5", "global", "per-label", "shrunk")


@dataclass
class SearchSpace:
    """What the tuner samples; settings named in `fixed` keep the base config's value."""

    lr: tuple[float, float] = (1e-5, 2e-4)
    epochs: tuple[int, int] = (2, 8)
    max_len: tuple[int, ...] = (128, 256, 384, 512)
    dropout: tuple[float, float] = (0.0, 0.3)
    attention_dropout: tuple[float | None, ...] = (None, 0.0)  # None: the encoder's own
    layer_decay: tuple[float, float] = (0.7, 1.0)
    pooling: tuple[str, ...] = POOLINGS
    pos_weight: tuple[str, ...] = ("none", "auto")
    loss: tuple[str, ...] = LOSSES
    thresholds: tuple[str, ...] = SEARCHED_THRESHOLDS
    fixed: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not (0 < self.lr[0] <= self.lr[1]):
            raise ConfigError(f"lr range {self.lr} is empty or not positive")
        if not (1 <= self.epochs[0] <= self.epochs[1]):
            raise ConfigError(f"epochs range {self.epochs} is empty")
        if not self.max_len:
            raise ConfigError("max_len choices are empty")

    def sample(self, trial) -> dict[str, Any]:
        """One draw of every setting that is not fixed."""
        draws = {
            "lr": lambda: trial.suggest_float("lr", *self.lr, log=True),
            "epochs": lambda: trial.suggest_int("epochs", *self.epochs),
            "max_len": lambda: trial.suggest_categorical("max_len", list(self.max_len)),
            "pooling": lambda: trial.suggest_categorical("pooling", list(self.pooling)),
            "dropout": lambda: trial.suggest_float("dropout", *self.dropout),
            "attention_dropout": lambda: trial.suggest_categorical(
                "attention_dropout", list(self.attention_dropout)
            ),
            "pos_weight": lambda: trial.suggest_categorical("pos_weight", list(self.pos_weight)),
            "loss": lambda: trial.suggest_categorical("loss", list(self.loss)),
            "layer_decay": lambda: trial.suggest_float("layer_decay", *self.layer_decay),
            "thresholds": lambda: trial.suggest_categorical("thresholds", list(self.thresholds)),
        }
        return {name: draw() for name, draw in draws.items() if name not in self.fixed}


def max_len_choices(upper: int, base: TrainConfig) -> tuple[int, ...]:
    """Token lengths up to `upper` (chunking needs max_len above twice a stride that is set;
    the default stride fits every length)."""
    found = [m for m in SearchSpace.max_len if m <= upper] or [upper]
    if base.long == "chunk" and base.stride is not None:
        found = [m for m in found if base.stride < m // 2]
    if not found:
        raise ConfigError(f"no max_len up to {upper} fits --long chunk with stride {base.stride}")
    return tuple(found)


class PruningCallback:
    """Reports each epoch's validation micro-F1 to the trial and stops hopeless trials."""

    def __init__(self, trial):
        self.trial = trial

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        import optuna

        if "micro_f1" not in record:
            return
        self.trial.report(record["micro_f1"], step=int(record["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

    def on_train_end(self, result) -> None:
        pass

    def on_train_abort(self, error: BaseException) -> None:
        pass


def open_study(out: Path, storage: str | None, seed: int):
    """The study in `storage` (default: SQLite in `out`), created or loaded to resume."""
    extras.require("tune", "mlabel tune")
    import optuna

    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=_storage(url),
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        load_if_exists=True,
    )
    # Seeded, but a resumed search must not replay the first run's random draws.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def _storage(url: str, attempts: int = 5):
    """Optuna's database storage. Two searches creating one SQLite study at the same moment race
    on its schema (a UNIQUE or locked-database error for one of them): the loser tries again."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            # Heartbeats let a later run mark a killed run's trials as failed, not running forever.
            return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def tune(
    base_cfg: TrainConfig,
    data: Any,
    out: str | Path,
    trials: int,
    timeout: float | None = None,
    storage: str | None = None,
    space: SearchSpace | None = None,
) -> Any:
    """Run `trials` more trials (or until `timeout` seconds) and write best.yaml and the plots."""
    import torch

    from mlabel.classifier import fit_model, prepare_data
    from mlabel.tracking import tracking_callbacks

    if base_cfg.all_data:
        raise ConfigError("tune needs a validation split; drop --all-data")
    prepare_data(base_cfg, data)  # a bad table stops here in one line, before any trial fails
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    space = space or SearchSpace()
    study = open_study(out, storage, base_cfg.seed)

    def objective(trial) -> float:
        cfg = base_cfg.replace(**space.sample(trial))
        trial.set_user_attr("config", cfg.to_dict())
        run_dir = out / "trials" / f"{trial.number:03d}"
        tracking = tracking_callbacks(cfg, run_dir, out / "mlruns", f"trial {trial.number:03d}")
        callbacks = (*tracking, PruningCallback(trial))  # a pruned trial's last epoch is logged
        result = fit_model(cfg, data, run_dir, callbacks=callbacks)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("model_dir", str(result.model_dir))
        return float(result.metrics["micro_f1"])

    try:  # an out-of-memory trial fails alone; an interrupted search still writes its results
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(torch.OutOfMemoryError,))
    finally:
        write_outputs(study, out)
    return study


def completed(study) -> list:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def write_outputs(study, out: Path) -> None:
    """best.yaml, the best_model link and the two plots (when any trial completed)."""
    out = Path(out)
    if completed(study):
        write_best(study.best_trial, out)
    plot_history(completed(study), out / "history.png")
    plot_importance(param_importances(study), out / "importance.png")


def write_best(trial, out: Path) -> None:
    """A config `mlabel train --config` takes as is, and `out/best_model` -> the trial's model.
    best.yaml names the trial's own folder: it stays true when a kill falls between the two."""
    model_dir = Path(trial.user_attrs["model_dir"])
    link, tmp = out / "best_model", out / f".best_model-{os.getpid()}"
    try:  # a new link renamed over the old: two searches on one study may both write it
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(model_dir.resolve(), out.resolve()))
        os.replace(tmp, link)
    except OSError:  # no symlinks (some Windows setups): the path in the header is enough
        pass
    faults.point("tune.best_linked")
    header = (
        f"# best trial {trial.number}: validation micro-F1 {trial.value:.4f} "
        f"(best epoch {trial.user_attrs.get('best_epoch')})\n"
        f"# its model folder: {model_dir}\n"
        f"# final fit: mlabel train DATA --config {out / 'best.yaml'} --all-data "
        f"--thresholds-from {model_dir} --out RUN\n"
    )
    body = yaml.safe_dump(from_dict(trial.user_attrs["config"]).to_dict(), sort_keys=False)
    write_text_atomic(out / "best.yaml", header + body)


def param_importances(study) -> dict[str, float]:
    """Optuna's importances, or {} when fewer than 2 trials completed or nothing varied."""
    import optuna

    if len(completed(study)) < 2:
        return {}
    try:
        found = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):
        return {}
    return {k: v for k, v in found.items() if math.isfinite(v)}


def trials_table(study):
    """A rich table: number, state, micro-F1, best epoch and the sampled settings (best in bold)."""
    from rich.table import Table

    table = Table("#", "state", "micro-F1", "epoch", "settings", title="Trials")
    best = study.best_trial.number if completed(study) else None
    for t in study.trials:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        settings = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        table.add_row(
            str(t.number),
            t.state.name.lower(),
            value,
            str(t.user_attrs.get("best_epoch", "-")),
            settings,
            style="bold green" if t.number == best else None,
        )
    return table


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def fixed_names(given: Iterable[str]) -> frozenset[str]:
    """Settings given on the command line are held fixed (not searched)."""
    return frozenset(given) & set(SearchSpace.__dataclass_fields__)
