"""Experiment tracking callbacks (MLflow, TensorBoard); both optional extras."""

from __future__ import annotations

from pathlib import Path

from mlabel.config import TrainConfig


def tracking_callbacks(cfg: TrainConfig, out_dir: str | Path) -> tuple:
    """The callbacks `cfg.track` asks for (none by default)."""
    if cfg.track is None:
        return ()
    raise NotImplementedError(f"--track {cfg.track} is not available yet")
