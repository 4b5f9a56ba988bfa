"""`mlabel tune DATA --text-cols ... --trials N --out DIR [--timeout MIN] [--storage URL]`."""

from __future__ import annotations

import argparse

from mlabel import extras
from mlabel.cli.common import (
    DATA,
    add_config_options,
    config_values,
    non_negative,
    require_named_columns,
    whole,
)
from mlabel.config import from_dict


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna (resumable); writes best.yaml",
        description="Settings given as options are held fixed; the others are searched.",
    )
    p.add_argument("data", help=f"labelled table (a validation split is taken from it): {DATA}")
    p.add_argument("--out", "-o", default="runs/tune", help="study folder (default: runs/tune)")
    p.add_argument("--trials", type=whole(1), default=20, help="trials to add (default: 20)")
    p.add_argument(
        "--timeout", type=non_negative, help="stop starting trials after this many minutes"
    )
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--lr-min", type=float, default=1e-5, help="learning-rate range (log scale)")
    p.add_argument("--lr-max", type=float, default=2e-4)
    p.add_argument("--epochs-min", type=int, default=2, help="epoch range")
    p.add_argument("--epochs-max", type=int, default=8)
    p.add_argument(
        "--max-len-max", type=whole(8), default=512, help="longest max_len tried (default: 512)"
    )
    add_config_options(p, skip=("all_data", "unlabeled"))
    return p


def run(args: argparse.Namespace) -> int:
    extras.require("tune", "mlabel tune")
    from rich.console import Console

    from mlabel.tune import SearchSpace, completed, fixed_names, max_len_choices, trials_table, tune

    given = config_values(args)
    require_named_columns(args.data, given.get("id_col"))
    base = from_dict(given, source="options")
    space = SearchSpace(
        lr=(args.lr_min, args.lr_max),
        epochs=(args.epochs_min, args.epochs_max),
        max_len=max_len_choices(args.max_len_max, base),
        fixed=fixed_names(given),
    )
    timeout = args.timeout * 60 if args.timeout is not None else None
    study = tune(base, args.data, args.out, args.trials, timeout, args.storage, space)
    Console(markup=False).print(trials_table(study))
    if not completed(study):
        print("no trial completed; nothing to write")
        return 1
    best = study.best_trial
    print(f"best trial {best.number}: validation micro-F1 {best.value:.4f}")
    print(f"wrote {args.out}/best.yaml, {args.out}/history.png, {args.out}/importance.png")
    print(
        f"final fit: mlabel train {args.data} --config {args.out}/best.yaml --all-data "
        f"--thresholds-from {args.out}/best_model --out RUN"
    )
    return 0
