"""`mlabel train DATA --text-cols ... --out DIR`."""

from __future__ import annotations

import argparse
import warnings

from mlabel.cli.common import add_config_options, config_values
from mlabel.config import from_dict, load_config


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model folder from a labelled table")
    p.add_argument("data", help="CSV, TSV, JSONL or Parquet file (compressed CSV too)")
    p.add_argument("--out", "-o", default="runs/latest", help="run folder (default: runs/latest)")
    p.add_argument("--config", help="YAML or TOML file of settings (options given here win)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last complete checkpoint"
    )
    add_config_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from mlabel.classifier import fit_model
    from mlabel.model import read_meta
    from mlabel.runtime import setup, teardown
    from mlabel.tracking import tracking_callbacks

    values = load_config(args.config) if args.config else {}  # checked on its own, by file name
    cfg = from_dict({**values, **config_values(args)}, source="options")
    rt = setup(cfg.threads)  # under torchrun: join the process group; rank 0 alone reports
    if not rt.is_main:
        warnings.simplefilter("ignore")
    callbacks = tracking_callbacks(cfg, args.out) if rt.is_main else ()
    result = fit_model(cfg, args.data, args.out, resume=args.resume, callbacks=callbacks)
    teardown(rt)
    if not rt.is_main:
        return 0
    metrics = result.metrics
    if metrics:
        meta = read_meta(result.model_dir)
        blend = ", blended with TF-IDF" if meta.get("ensemble") else ""
        print(
            f"best epoch {result.best_epoch}: micro-F1 {metrics['micro_f1']:.4f}, "
            f"macro-F1 {metrics['macro_f1']:.4f} "
            f"(validation split, thresholds {meta['threshold_method']}{blend})"
        )
    print(f"model saved to {result.model_dir}")
    return 0
