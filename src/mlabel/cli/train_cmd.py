"""`mlabel train DATA --text-cols ... --out DIR`."""

from __future__ import annotations

import argparse
import warnings
from typing import TYPE_CHECKING

from mlabel.cli.common import DATA, add_config_options, config_values, require_named_columns
from mlabel.config import from_dict, load_config

if TYPE_CHECKING:
    from mlabel.training import TrainResult


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model folder from a labelled table")
    p.add_argument("data", help=f"labelled table: {DATA}")
    p.add_argument("--out", "-o", default="runs/latest", help="run folder (default: runs/latest)")
    p.add_argument("--config", help="YAML or TOML file of settings (options given here win)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last complete checkpoint"
    )
    add_config_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from mlabel.classifier import fit_model
    from mlabel.runtime import check_precision, setup, teardown
    from mlabel.tracking import require_tracker, tracking_callbacks

    values = load_config(args.config) if args.config else {}  # checked on its own, by file name
    cfg = from_dict({**values, **config_values(args)}, source="options")
    require_named_columns(args.data, getattr(args, "id_col", None))
    check_precision(cfg.precision)  # fp16 on a machine without a GPU: before loading anything
    require_tracker(cfg.track)  # on every rank, before joining a process group
    rt = setup(cfg.threads)  # once per process; under torchrun, joins the process group
    if not rt.is_main:  # rank 0 alone reports (training keeps its files and callbacks to rank 0)
        warnings.simplefilter("ignore")
    callbacks = tracking_callbacks(cfg, args.out)  # none on the other ranks
    result = fit_model(
        cfg, args.data, args.out, resume=args.resume, callbacks=callbacks, runtime=rt
    )
    teardown(rt)
    if rt.is_main:
        _print_summary(result)
    return 0


def _print_summary(result: TrainResult) -> None:
    from mlabel.folder import read

    if result.metrics:
        info = read(result.model_dir)
        blend = ", blended with TF-IDF" if info.ensemble else ""
        print(
            f"best epoch {result.best_epoch}: micro-F1 {result.metrics['micro_f1']:.4f}, "
            f"macro-F1 {result.metrics['macro_f1']:.4f} "
            f"(validation split, thresholds {info.threshold_method}{blend})"
        )
    print(f"model saved to {result.model_dir}")
