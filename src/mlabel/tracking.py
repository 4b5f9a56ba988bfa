"""Experiment tracking callbacks (MLflow, TensorBoard); both optional extras (`mlabel[track]`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mlabel import extras
from mlabel.config import TrainConfig

EXPERIMENT = "mlabel"


def tracking_callbacks(
    cfg: TrainConfig,
    out_dir: str | Path,
    store: str | Path | None = None,
    run_name: str | None = None,
) -> tuple:
    """The callbacks `cfg.track` asks for (none by default, and none on ranks other than 0).

    `store` and `run_name` are MLflow's local store (default `out_dir/mlruns`) and run name
    (default the folder's name); the tuner puts all its trials in one store.
    """
    if cfg.track is None or int(os.environ.get("RANK", "0")) != 0:
        return ()
    if cfg.track == "mlflow":
        return (MlflowTracker(cfg, out_dir, store, run_name),)
    return (TensorBoardTracker(cfg, out_dir),)


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of an epoch record, without the epoch itself."""
    return {
        k: float(v)
        for k, v in record.items()
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def require_tracker(track: str | None) -> None:
    """Raise ExtraMissing, in one line, when the package `--track` names is not installed."""
    if track is not None:
        extras.require("track", f"--track {track}", (track,))


class MlflowTracker:
    """Logs settings, per-epoch metrics, the run's plots and the model folder to one MLflow run.

    The store is MLFLOW_TRACKING_URI when set, else a local file store, `out_dir/mlruns` unless
    `store` names another folder (offline; browse it with
    `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri DIR`).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | Path,
        store: str | Path | None = None,
        run_name: str | None = None,
    ):
        require_tracker("mlflow")
        from mlflow.tracking import MlflowClient

        self.out = Path(out_dir)
        local = Path(store) if store is not None else self.out / "mlruns"
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or _local_store(local)
        self.client = MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else self.client.create_experiment(name)
        run = self.client.create_run(experiment, run_name=run_name or self.out.name)
        self.run_id = run.info.run_id
        self._log(params={k: _param(v) for k, v in cfg.to_dict().items()})

    def _log(self, params: dict | None = None, metrics: dict | None = None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            params=[Param(k, v) for k, v in (params or {}).items()],
            metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
        )

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self._log(metrics=_numbers(record), step=int(record["epoch"]))

    def on_train_end(self, result) -> None:
        if result.metrics:
            self._log(metrics={f"final_{k}": v for k, v in _numbers(result.metrics).items()})
        for png in sorted(result.out_dir.rglob("*.png")):
            if "mlruns" not in png.relative_to(result.out_dir).parts:
                self.client.log_artifact(self.run_id, str(png), "plots")
        self.client.log_artifacts(self.run_id, str(result.model_dir), "model")
        self.client.set_terminated(self.run_id, "FINISHED")

    def on_train_abort(self, error: BaseException) -> None:
        """A pruned or interrupted run ends KILLED, a failed one FAILED; the reason is a tag."""
        self.client.set_tag(self.run_id, "mlabel.stopped", f"{type(error).__name__}: {error}")
        self.client.set_terminated(self.run_id, "KILLED" if _deliberate(error) else "FAILED")


def _deliberate(error: BaseException) -> bool:
    """Ctrl-C or an Optuna pruning (optuna is an optional extra)."""
    if isinstance(error, KeyboardInterrupt):
        return True
    if extras.missing("tune"):
        return False
    from optuna import TrialPruned

    return isinstance(error, TrialPruned)


def _local_store(folder: Path) -> str:
    # MLflow 3 keeps the file store but asks for an opt-in; unlike SQLite it needs no setup.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve().as_uri()


def _param(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


class TensorBoardTracker:
    """Writes per-epoch scalars and the settings to `out_dir/tensorboard`."""

    def __init__(self, cfg: TrainConfig, out_dir: str | Path):
        require_tracker("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))
        settings = "\n".join(f"    {k}: {_param(v)}" for k, v in cfg.to_dict().items())
        self.writer.add_text("config", settings)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, int(record["epoch"]))
        self.writer.flush()

    def on_train_end(self, result) -> None:
        self.writer.close()

    def on_train_abort(self, error: BaseException) -> None:
        self.writer.close()
